//! systemd notifications. Each is a no-op outside systemd (no `NOTIFY_SOCKET`).

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(event = "sd_notify_failed", error = %e);
    }
}

/// `READY=1`: alerts loaded, store open.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// `RELOADING=1` at the start of a reload.
pub fn reloading() {
    send(&[NotifyState::Reloading]);
}

/// `STOPPING=1` when shutdown begins.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// `WATCHDOG=1`.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// The watchdog interval systemd asked for, if any. As in libsystemd's
/// `sd_watchdog_enabled`, `WATCHDOG_PID` is optional, but when set it must
/// name this process.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| std::time::Duration::from_micros(usec))
}
