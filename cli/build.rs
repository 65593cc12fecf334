fn main() {
    // A position-dependent executable: no relocations to apply at every
    // start. A static build (`-C target-feature=+crt-static`) links as
    // rustc chooses: static-pie, or with `-C relocation-model=static` a
    // plain static executable; `-no-pie` would break the former.
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if !features.split(',').any(|f| f == "crt-static") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
