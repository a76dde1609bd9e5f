//! A safe cache hint: [`prefetch`] asks the CPU to start loading the cache
//! line of a slice element that will be read soon, so that several such
//! misses overlap instead of queueing one after another. The domain table
//! prefetches every probed suffix's slot with it, and the packet core
//! (`#![forbid(unsafe_code)]`) the flow-table and domain-table slots of a
//! burst of frames.
//!
//! This is the one place outside the artifact's `Pod` impls where this
//! crate uses `unsafe`, for the intrinsic: see the `SAFETY` note.

/// Hint that `slice[i]` will be read soon. Nothing is read and nothing can
/// fault: an index past the end is ignored. A no-op off x86-64.
#[inline(always)]
pub fn prefetch<T>(slice: &[T], i: usize) {
    if let Some(x) = slice.get(i) {
        prefetch_ref(x);
    }
}

/// Hint that `x` will be read soon (its first cache line).
#[inline(always)]
pub fn prefetch_ref<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint that never faults and reads nothing
    // the program can observe; the pointer comes from a live reference, and
    // SSE (which provides the instruction) is part of the x86-64 baseline.
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (x as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}
