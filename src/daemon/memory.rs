//! Giving freed heap back to the system after a burst.
//!
//! Loading 10,000 alert files or running 10,000 alerts at one tick
//! allocates tens of megabytes that are all freed a moment later. glibc's
//! allocator keeps such memory in its arenas (one per thread that ever
//! contended) and returns it only from the top of each heap, so without
//! help the daemon's RSS stays at its peak forever and creeps up as bursts
//! land in different arenas. After a burst the daemon asks the allocator to
//! return every free page ([`trim`]), and at start it caps the arenas at two
//! ([`limit_arenas`]): the scheduler and the runs share few threads, and
//! more arenas only spread the same garbage wider.

use std::time::{Duration, Instant};

/// Bursts closer together than this are trimmed once (a trim walks every
/// arena: a few milliseconds at 100 MB, nothing when little is free).
const TRIM_GAP: Duration = Duration::from_secs(5);

/// Caps glibc's arenas; elsewhere nothing.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters; called once at
    // start, before the runtime's worker threads allocate much.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns free heap pages to the system now.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it takes the arenas' locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims after a burst of runs ends, at most once per [`TRIM_GAP`].
#[derive(Debug)]
pub struct Trimmer {
    runs: usize,
    last: Instant,
}

impl Default for Trimmer {
    fn default() -> Self {
        Trimmer {
            runs: 0,
            last: Instant::now(),
        }
    }
}

impl Trimmer {
    /// One run ended; `idle` when none is left in flight.
    pub fn ran(&mut self, idle: bool) {
        self.runs += 1;
        if idle && self.last.elapsed() >= TRIM_GAP {
            trim();
            self.runs = 0;
            self.last = Instant::now();
        }
    }

    /// Nothing is in flight and runs ended since the last trim: trim now
    /// (the loop calls this on a quiet wake-up, so the tail of a burst that
    /// ended within [`TRIM_GAP`] of the last trim is not left unreturned).
    pub fn settle(&mut self) {
        if self.runs > 0 && self.last.elapsed() >= TRIM_GAP {
            trim();
            self.runs = 0;
            self.last = Instant::now();
        }
    }
}
