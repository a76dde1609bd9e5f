//! Counting the allocations one thread makes, for the tests that prove a
//! path allocates nothing. Install [`Counting`] as the test binary's
//! global allocator, then wrap the path in [`allocations_in`].
//!
//! Only the calling thread is counted: the test harness's own threads
//! (output capture, timers) allocate when they like, and a process-wide
//! count made such tests fail at random under load.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // `const` and without a destructor: reading them never allocates,
    // not even while a thread is being torn down.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, counting allocations and reallocations made by a
/// thread inside [`allocations_in`].
pub struct Counting;

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting only
// touches allocation-free thread-locals.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

/// Run `f` and say how many allocations this thread made meanwhile
/// (needs [`Counting`] as the global allocator, or it reads 0).
pub fn allocations_in<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, COUNT.with(Cell::get))
}
