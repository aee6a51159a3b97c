//! A counting global allocator: per thread, while tracking is on, the largest single
//! allocation and the peak of live bytes (allocated minus freed since tracking began).
//!
//! Counters are `thread_local!` with const-initialized `Cell`s, so the allocator never
//! allocates itself; only the thread running a case is measured.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Wraps [`System`], counting allocations of threads that called [`start`].
pub struct CountingAlloc;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static MAX_SINGLE: Cell<usize> = const { Cell::new(0) };
}

/// What one tracked stretch allocated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Largest single allocation (or reallocation's new size) in bytes.
    pub max_single: usize,
    /// Peak of live bytes allocated during the stretch.
    pub peak_live: usize,
}

fn on_alloc(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = MAX_SINGLE.try_with(|m| m.set(m.get().max(size)));
            let _ = LIVE.try_with(|l| {
                let now = l.get().saturating_add(size as isize);
                l.set(now);
                let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
            });
        }
    });
}

fn on_free(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(size as isize)));
        }
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the bookkeeping touches only
// const-initialized thread-local cells and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_free(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_alloc(new_size);
        on_free(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Starts tracking this thread's allocations from zero.
pub fn start() {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    MAX_SINGLE.with(|m| m.set(0));
    TRACKING.with(|t| t.set(true));
}

/// Stops tracking and returns what was allocated since [`start`].
pub fn stop() -> AllocStats {
    TRACKING.with(|t| t.set(false));
    AllocStats {
        max_single: MAX_SINGLE.with(Cell::get),
        peak_live: PEAK.with(Cell::get).max(0) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_single_and_peak() {
        start();
        let a = vec![0u8; 1000];
        let b = vec![0u8; 3000];
        drop(a);
        drop(b);
        let s = stop();
        assert!(s.max_single >= 3000, "{s:?}");
        assert!(s.peak_live >= 4000, "{s:?}");
        start();
        let s = stop();
        assert_eq!(s, AllocStats::default());
    }
}
