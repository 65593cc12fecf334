//! Authentication (user and password, with the token renewed when it
//! expires) and TLS (CA and client certificate) against real servers.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use statelog::Error;
use statelog::testkit::etcd::{
    Client, ClientOptions, Commit, Credentials, EtcdStore, Layout, Limits, TlsOptions,
};

use crate::harness::{Cluster, ServerTls, Settings};

fn credentials(user: &str, password: &str) -> Option<Credentials> {
    Some(Credentials {
        user: user.into(),
        password: password.into(),
    })
}

fn store_with(cluster: &Cluster, prefix: &str, creds: Option<Credentials>) -> EtcdStore {
    let client = Client::new(&ClientOptions {
        credentials: creds,
        failover_timeout: Some(Duration::from_secs(2)),
        ..cluster.options()
    })
    .unwrap();
    EtcdStore::new(client, Layout::new(prefix).unwrap(), Limits::default())
}

fn write(store: &EtcdStore, key: &str) -> statelog::Result<()> {
    let value = statelog::RawValue::from_value(&key).unwrap();
    store
        .commit(Commit::new().put("ns", key, value, false)?)
        .map(|_| ())
}

#[test]
fn authentication_admits_the_user_on_its_prefix_only_and_renews_its_token() {
    let cluster = Cluster::start(
        1,
        Settings {
            // Tokens expire after a second of disuse, so the test sees one expire.
            extra: vec!["--auth-token=simple".into(), "--auth-token-ttl=1".into()],
            ..Settings::default()
        },
    );
    let layout = Layout::new("ci/sync-state").unwrap();
    cluster.enable_auth(&layout, "runner", "runner-secret");

    let store = store_with(
        &cluster,
        "ci/sync-state",
        credentials("runner", "runner-secret"),
    );
    write(&store, "a").unwrap();
    assert!(store.get("ns", "a", 0).unwrap().is_some());
    std::thread::sleep(Duration::from_secs(3));
    write(&store, "after-expiry").unwrap();
    assert!(store.get("ns", "after-expiry", 0).unwrap().is_some());

    let wrong = store_with(&cluster, "ci/sync-state", credentials("runner", "guess"));
    let e = write(&wrong, "b").unwrap_err();
    assert!(matches!(e, Error::Refused { pid: None, .. }), "{e}");
    assert!(e.to_string().contains("password is wrong"), "{e}");

    let anonymous = store_with(&cluster, "ci/sync-state", None);
    let e = anonymous.get("ns", "a", 0).unwrap_err();
    assert!(matches!(e, Error::Refused { pid: None, .. }), "{e}");
    assert!(e.to_string().contains("give a user and password"), "{e}");

    // The role covers this store's prefix, not a neighbour's.
    let neighbour = store_with(
        &cluster,
        "ci/sync-stat",
        credentials("runner", "runner-secret"),
    );
    let e = write(&neighbour, "c").unwrap_err();
    assert!(matches!(e, Error::Refused { pid: None, .. }), "{e}");
    assert!(e.to_string().contains("readwrite"), "{e}");
    assert!(store.get("ns", "b", 0).unwrap().is_none());
}

/// Writes a CA, a server certificate for 127.0.0.1 and a client certificate
/// with the openssl command (P-256 keys, valid for a day).
fn make_certificates(dir: &Path) -> ServerTls {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (the TLS test uses the openssl command)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &key,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=statelog test CA",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        run(&[
            &["req"][..],
            &key,
            &[
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
    ServerTls {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}

#[test]
fn tls_with_a_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let server = make_certificates(certs.path());
    let ca = std::fs::read(&server.ca).unwrap();
    let identity = Some((
        std::fs::read(&server.client_cert).unwrap(),
        std::fs::read(&server.client_key).unwrap(),
    ));
    let cluster = Cluster::start(
        1,
        Settings {
            tls: Some(server),
            ..Settings::default()
        },
    );
    let tls = TlsOptions {
        ca_pem: ca.clone(),
        identity_pem: identity.clone(),
        domain: None,
    };
    let connect = |tls: TlsOptions| {
        let client = Client::new(&ClientOptions {
            tls: Some(tls),
            failover_timeout: Some(Duration::from_secs(2)),
            ..cluster.options()
        })
        .unwrap();
        EtcdStore::new(client, Layout::new("tls").unwrap(), Limits::default())
    };
    let store = connect(tls);
    write(&store, "secure").unwrap();
    assert!(store.get("ns", "secure", 0).unwrap().is_some());

    // Without the client certificate the server refuses the handshake.
    let e = write(
        &connect(TlsOptions {
            ca_pem: ca,
            identity_pem: None,
            domain: None,
        }),
        "x",
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::Unreachable { .. } | Error::OutcomeUnknown { .. }),
        "{e}"
    );
    // A CA that did not sign the server's certificate is not trusted.
    let other = tempfile::tempdir().unwrap();
    let foreign = make_certificates(other.path());
    let e = write(
        &connect(TlsOptions {
            ca_pem: std::fs::read(&foreign.ca).unwrap(),
            identity_pem: identity,
            domain: None,
        }),
        "y",
    )
    .unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    assert!(store.get("ns", "x", 0).unwrap().is_none());
}
