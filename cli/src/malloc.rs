//! glibc's malloc held to one arena in this process.
//!
//! By default glibc gives each thread that allocates an arena of its own, up
//! to eight per core, and a freed block stays resident in the arena it came
//! from. A holder (`serve`, and `watch` or `wait` while they hold the store)
//! runs redb's work on whichever thread leads a group commit, and redb's
//! cache, once the store outgrows it, evicts and reads pages all the time: its
//! page buffers then end up spread over every arena, each keeping what it
//! once held, and the RSS grows with the store and the number of clients
//! while the live heap stays at the cache and a few MiB (BENCHMARKS.md,
//! "Memory"). One arena keeps the RSS at the live heap. The library cannot
//! choose this for the processes it is embedded in; the command line can.

/// The cap on glibc's malloc arenas (the main one included).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: libc::c_int = 1;

/// Caps glibc's malloc arenas at [`ARENAS`], unless the environment sets the
/// cap (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`):
/// a user's choice wins. Call it first in `main`, before any thread starts:
/// arenas that threads make before it stay, and glibc fixes its limit once
/// it has counted them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn cap_arenas() {
    let chosen = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var_os("GLIBC_TUNABLES")
            .is_some_and(|t| t.to_string_lossy().contains("glibc.malloc.arena_max"));
    if chosen {
        return;
    }
    // SAFETY: mallopt sets one of malloc's parameters; no other thread
    // exists yet. It cannot fail for this parameter and value (it returns 0
    // only for an unknown parameter), and nothing would change if it did.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Elsewhere the allocator is not glibc's: nothing to cap.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn cap_arenas() {}
