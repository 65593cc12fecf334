//! The live heap of the process, counted by a global allocator in front of
//! the system's, when `STATELOG_BENCH_HEAP=1`. It tells the memory an engine
//! holds from the memory the allocator keeps after it was freed (glibc's
//! per-thread arenas), which the RSS cannot. Rust's allocations only: SQLite
//! allocates through C's `malloc`, past this counter. Off (the default), each
//! allocation pays one relaxed load; on, every thread updates one shared
//! counter, so rates measured with it are not comparable with those without.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

static ON: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

#[global_allocator]
static COUNTING: Counting = Counting;

fn count(bytes: isize) {
    if ON.load(Ordering::Relaxed) {
        LIVE.fetch_add(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call goes to the system allocator unchanged; the counter
// only observes the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's layout, passed on as it came.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: `ptr` came from this allocator, that is the system's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: as for `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Starts counting if `STATELOG_BENCH_HEAP` asks for it (first thing in
/// `main`, so that almost nothing was allocated uncounted).
pub fn enable_from_env() {
    ON.store(
        std::env::var("STATELOG_BENCH_HEAP").is_ok_and(|v| !v.is_empty() && v != "0"),
        Ordering::Relaxed,
    );
}

/// Bytes allocated and not yet freed since counting started (KiB), when on.
pub fn live_kib() -> Option<i64> {
    ON.load(Ordering::Relaxed)
        .then(|| LIVE.load(Ordering::Relaxed) as i64 / 1024)
}
