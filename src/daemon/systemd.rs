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

/// The watchdog interval systemd asked for, if any.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec)
        .then(|| std::time::Duration::from_micros(usec))
}
