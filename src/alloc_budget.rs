//! Memory budgets for one evaluation of user code (a Rhai script, a
//! template render).
//!
//! Scripts and templates come from alert files, and a few lines of either
//! can ask for gigabytes (a string doubled in a loop, a map of megabyte
//! strings). Per-value size limits don't bound the total, so the process's
//! allocator counts the bytes each thread holds, and a [`Budget`] opened
//! around an evaluation says when the evaluation itself has grown past its
//! limit. The interpreters are then stopped at their next check (Rhai at
//! every operation; minijinja whenever it calls back into esalert), and
//! that alert gets an error; nothing aborts.
//!
//! The count is per thread: the evaluations are synchronous, so everything
//! they allocate is allocated on the thread that runs them. The `esalert`
//! binary installs [`CountingAlloc`] as its global allocator; a program that
//! embeds the library without it gets no memory budgets (only the per-value
//! limits), since nothing is counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting bytes per thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread.
    static HELD: Cell<i64> = const { Cell::new(0) };
    /// The innermost open budget: held at its start, its limit, and whether
    /// it was ever found spent (memory freed since doesn't undo that).
    static OPEN: Cell<Option<(i64, i64, bool)>> = const { Cell::new(None) };
}

fn count(delta: i64) {
    // try_with: never panics, also while the thread is being torn down.
    let _ = HELD.try_with(|h| h.set(h.get().wrapping_add(delta)));
}

fn bytes(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counting touches only const-initialised thread-locals, which never
// allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(bytes(layout.size()));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(bytes(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        count(-bytes(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(bytes(new_size).wrapping_sub(bytes(layout.size())));
        }
        p
    }
}

/// An open budget on the current thread; closed when dropped. Budgets nest:
/// the innermost one is checked.
#[derive(Debug)]
pub struct Budget {
    outer: Option<(i64, i64, bool)>,
    limit: usize,
}

impl Budget {
    /// Opens a budget of `limit` bytes from now on this thread.
    pub fn open(limit: usize) -> Budget {
        let held = HELD.try_with(Cell::get).unwrap_or(0);
        let outer = OPEN
            .try_with(|o| o.replace(Some((held, bytes(limit), false))))
            .unwrap_or(None);
        Budget { outer, limit }
    }

    /// The limit, for messages.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether this budget is spent, or was at some point.
    pub fn exceeded(&self) -> bool {
        exceeded()
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        let _ = OPEN.try_with(|o| o.set(self.outer));
    }
}

/// Whether the innermost budget open on this thread is spent, or was when
/// last asked; false when none is open. Cheap: interpreters call it at
/// every step.
pub fn exceeded() -> bool {
    let Ok(Some((start, limit, tripped))) = OPEN.try_with(Cell::get) else {
        return false;
    };
    if tripped {
        return true;
    }
    let over = HELD
        .try_with(Cell::get)
        .is_ok_and(|h| h.wrapping_sub(start) > limit);
    if over {
        let _ = OPEN.try_with(|o| o.set(Some((start, limit, true))));
    }
    over
}

/// `n` bytes for messages, e.g. `64 MiB`.
pub fn fmt_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_sees_what_its_thread_allocates_and_keeps() {
        let b = Budget::open(1 << 20);
        assert!(!b.exceeded());
        let small = vec![0u8; 1000];
        assert!(!b.exceeded());
        let big = vec![1u8; 2 << 20];
        assert!(b.exceeded(), "2 MiB held is over a 1 MiB budget");
        drop(big);
        assert!(b.exceeded(), "once spent, a budget stays spent");
        drop(small);
        drop(b);
        assert!(!exceeded(), "no budget open");
        let b = Budget::open(1 << 20);
        let big = vec![1u8; 512 << 10];
        drop(big);
        let again = vec![1u8; 768 << 10];
        assert!(!b.exceeded(), "freed memory no longer counts");
        drop(again);
        assert_eq!(fmt_bytes(64 << 20), "64 MiB");
    }
}
