//! `alerts.log`: one logfmt line per event, mirrored to stderr for journald.
//!
//! ```text
//! ts=2026-11-21T20:41:00.123Z level=INFO alert=admin_logins outcome=matched hits=3 took_ms=12
//! ```
//!
//! The file rotates daily (`alerts.log.YYYY-MM-DD`) with `alerts.log` as a
//! symlink to the current day, so `tail -F alerts.log` keeps following. The
//! writer is non-blocking but lossless: under pressure it blocks instead of
//! dropping lines, because an alert log with holes can't be trusted.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The name of the log file (and of the symlink to the current day's file).
pub const LOG_NAME: &str = "alerts.log";

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log directory or file can't be written.
    #[error("cannot open {}/alerts.log: {reason}; check --log-dir and its permissions", dir.display())]
    Open {
        /// The log directory.
        dir: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// Keeps the file writer alive; dropping it flushes every pending line.
/// Hold it for the whole of `main`.
#[must_use = "dropping the guard stops file logging"]
pub struct LogGuard {
    _file: Option<WorkerGuard>,
}

/// Quotes a logfmt value when it needs it, so that every line parses.
pub fn escape_value(v: &str, out: &mut String) {
    let needs_quotes = v.is_empty()
        || v.chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
    if !needs_quotes {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes `key=value` pairs in logfmt; the event's message goes last as `msg`.
#[derive(Default)]
struct Fields {
    line: String,
    msg: Option<String>,
}

impl Fields {
    fn push(&mut self, key: &str, value: &str) {
        if key == "message" {
            self.msg = Some(value.to_owned());
            return;
        }
        self.line.push(' ');
        // Keys come from code, but keep them logfmt-safe anyway.
        self.line.extend(key.chars().map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        }));
        self.line.push('=');
        escape_value(value, &mut self.line);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field.name(), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field.name(), &value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field.name(), &value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field.name(), if value { "true" } else { "false" });
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field.name(), &value.to_string());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field.name(), &value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field.name(), &format!("{value:?}"));
    }
}

/// Formats one event as a logfmt line.
pub fn format_line(
    ts: &chrono::DateTime<chrono::Utc>,
    level: &Level,
    target: &str,
    record: impl FnOnce(&mut dyn Visit),
) -> String {
    let mut f = Fields::default();
    f.line.push_str("ts=");
    f.line.push_str(&crate::render::fmt_time(ts));
    f.line.push_str(" level=");
    f.line.push_str(level.as_str());
    if !target.starts_with("esalert") {
        f.push("target", target);
    }
    record(&mut f);
    if let Some(msg) = f.msg.take() {
        f.line.push_str(" msg=");
        escape_value(&msg, &mut f.line);
    }
    f.line.push('\n');
    f.line
}

/// The syslog priority of a level, as journald reads it from a `<N>` prefix.
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether stderr is connected to journald: systemd sets `JOURNAL_STREAM`
/// to the `device:inode` of the stream it gave us, and only when stderr is
/// still that stream are its lines the journal's (a shell started from the
/// service inherits the variable with another stderr).
pub fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat on fd 2 writes one stat struct, which we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)]
    let (d, i) = (st.st_dev as u64, st.st_ino as u64);
    d == dev && i == ino
}

/// The tracing formatter that produces esalert's logfmt lines. With
/// `syslog_prefix`, each line starts with its `<N>` priority for journald
/// (so `journalctl -p err` works); alerts.log lines never have it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Logfmt {
    /// Prefix lines with `<3>`, `<4>`, `<6>` or `<7>`.
    pub syslog_prefix: bool,
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let line = format_line(&chrono::Utc::now(), meta.level(), meta.target(), |v| {
            event.record(v)
        });
        if self.syslog_prefix {
            write!(writer, "<{}>", syslog_priority(meta.level()))?;
        }
        writer.write_str(&line)
    }
}

fn filter() -> Targets {
    Targets::new()
        .with_default(Level::WARN)
        .with_target("esalert", Level::INFO)
}

/// Makes every file this process creates from now on owner-only: the daily
/// log files (created by the appender, which takes no mode), the store, its
/// lock and ack requests hold alert data. Only ever tightens the umask a
/// service manager set (`UMask=0027` in the shipped unit).
fn private_umask() {
    // SAFETY: umask(2) cannot fail; the first call only reads the old mask.
    unsafe {
        let old = libc::umask(0o077);
        libc::umask(old | 0o077);
    }
}

/// Starts logging: always to stderr, and to `<dir>/alerts.log` when a
/// directory is given. Keeps at most `keep` daily files.
pub fn init(dir: Option<&Path>, keep: usize) -> Result<LogGuard, LogError> {
    let stderr = tracing_subscriber::fmt::layer()
        .event_format(Logfmt {
            syslog_prefix: stderr_is_journal(),
        })
        .with_writer(std::io::stderr)
        .with_filter(filter());
    let Some(dir) = dir else {
        let _ = tracing_subscriber::registry().with(stderr).try_init();
        return Ok(LogGuard { _file: None });
    };
    let open_err = |reason: String| LogError::Open {
        dir: dir.to_owned(),
        reason,
    };
    private_umask();
    std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
    // The symlink target is written relative to the directory as given, so
    // make it absolute or the link breaks for a relative --log-dir.
    let dir = std::fs::canonicalize(dir).map_err(|e| open_err(e.to_string()))?;
    let link = dir.join(LOG_NAME);
    if link.is_file() && !link.is_symlink() {
        // An alerts.log from a non-rotating setup: keep it, don't let the
        // appender delete it while placing the symlink.
        let _ = std::fs::rename(&link, dir.join(format!("{LOG_NAME}.old")));
    }
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(LOG_NAME)
        .latest_symlink(LOG_NAME)
        .max_log_files(keep.max(1))
        .build(&dir)
        .map_err(|e| open_err(e.to_string()))?;
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .thread_name("esalert-log")
        .finish(appender);
    let file = tracing_subscriber::fmt::layer()
        .event_format(Logfmt::default())
        .with_ansi(false)
        .with_writer(writer)
        .with_filter(filter());
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    Ok(LogGuard { _file: Some(guard) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        let mut s = String::new();
        escape_value("matched", &mut s);
        assert_eq!(s, "matched");
        let mut s = String::new();
        escape_value("a \"b\"\nc=d", &mut s);
        assert_eq!(s, r#""a \"b\"\nc=d""#);
        let mut s = String::new();
        escape_value("", &mut s);
        assert_eq!(s, r#""""#);
    }
}
