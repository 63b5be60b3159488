//! How often the backstop rescan of `queries/` runs.
//!
//! A rescan stats every file: about 35 ms of CPU at 10,000 alerts, which at
//! the default 30 s alone was several times the idle budget. On a local
//! filesystem inotify misses nothing (an overflowed queue is reported, and
//! that report triggers a rescan), so with the watcher running there the
//! backstop runs hourly; on network and FUSE filesystems, whose remote
//! changes inotify never sees, and without a watcher, every `--rescan`.

use std::path::Path;
use std::time::Duration;

/// The backstop's period while a watcher covers a local directory.
pub const WATCHED: Duration = Duration::from_secs(3600);

/// The backstop period for `dir`: `rescan`, or [`WATCHED`] if longer when
/// `watched` and `dir` is on a local filesystem.
pub fn period(dir: &Path, rescan: Duration, watched: bool) -> Duration {
    if watched && is_local(dir) {
        rescan.max(WATCHED)
    } else {
        rescan
    }
}

/// Whether `dir` is on a filesystem whose changes inotify reports in full
/// (not NFS, SMB/CIFS, FUSE, 9p, Ceph, AFS, Coda). Unknown: not local.
fn is_local(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes one struct we own; `c` is a valid C string.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return false;
    }
    const REMOTE: [i64; 9] = [
        0x6969,      // NFS
        0x517B,      // SMB
        0xFF53_4D42, // CIFS
        0xFE53_4D42, // SMB2
        0x6573_5546, // FUSE
        0x0102_1997, // 9p
        0x00C3_6400, // Ceph
        0x5346_414F, // AFS
        0x7375_7245, // Coda
    ];
    #[allow(clippy::unnecessary_cast)]
    let kind = s.f_type as i64;
    !REMOTE.contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_watched_directory_is_rescanned_hourly_otherwise_as_asked() {
        let dir = std::env::temp_dir();
        let asked = Duration::from_secs(30);
        assert_eq!(period(&dir, asked, false), asked);
        assert_eq!(period(Path::new("/no/such/dir"), asked, true), asked);
        // /tmp is local on the machines the tests run on (tmpfs or a disk).
        assert_eq!(period(&dir, asked, true), WATCHED);
        assert_eq!(
            period(&dir, Duration::from_secs(7200), true),
            Duration::from_secs(7200)
        );
    }
}
