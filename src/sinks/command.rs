//! Runs a program for a notification (ElastAlert's `command` alerter).
//!
//! Off unless credentials.json says `"allow_command_alerter": true`: a
//! destination of this type refuses to be built otherwise. The program runs
//! without a shell, from the argument list the rule gave (the notification's
//! `argv` setting), with the notification's `stdin` setting (the match as
//! JSON, or the alert text) on its standard input, and is killed when it
//! outlives its timeout.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Deserialize;

use super::destinations::{DestinationType, SettingError, no_lint, settings};
use super::{Message, Sink, SinkError};
use crate::alert::HumanDuration;

/// A command destination's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandSettings {
    /// A non-zero exit is a failed delivery (ElastAlert's option of the
    /// same name); otherwise it is only logged as success.
    #[serde(default)]
    fail_on_non_zero_exit: bool,
    /// How long the program may run.
    #[serde(default = "default_timeout")]
    timeout: HumanDuration,
}

fn default_timeout() -> HumanDuration {
    HumanDuration::parse("30s").unwrap_or_else(|_| unreachable!("a valid literal"))
}

pub(super) static TYPE: DestinationType = DestinationType {
    name: "command",
    overridable: &[],
    build: |name, v, cx| {
        if !cx.credentials.allow_command_alerter {
            return Err(SettingError::at(
                "",
                "the command alerter is off: set \"allow_command_alerter\": true in credentials.json to let rules run programs",
            ));
        }
        let s: CommandSettings = settings(v)?;
        Ok(Arc::new(CommandSink {
            name: name.to_owned(),
            settings: s,
        }))
    },
    lint: no_lint,
    notices: false,
};

struct CommandSink {
    name: String,
    settings: CommandSettings,
}

/// Runs `argv` with `stdin`, waiting at most `timeout`.
fn run(
    argv: &[String],
    stdin: Option<String>,
    timeout: Duration,
    fail_on_non_zero_exit: bool,
) -> Result<(), SinkError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| SinkError::permanent("command", "the command is empty"))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| SinkError::permanent("command", format!("cannot run {program}: {e}")))?;
    // Written from its own thread: a program that doesn't read its input
    // must not block the wait below.
    let writer = match (stdin, child.stdin.take()) {
        (Some(text), Some(mut pipe)) => Some(std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        })),
        _ => None,
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SinkError::transient(
                    "command",
                    format!("{program} ran longer than {timeout:?} and was stopped"),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(SinkError::transient("command", e.to_string())),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    if fail_on_non_zero_exit && !status.success() {
        return Err(SinkError::permanent(
            "command",
            format!("{program} exited with {status}"),
        ));
    }
    Ok(())
}

impl Sink for CommandSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let Message::Notification { notification, .. } = m else {
                return Err(SinkError::permanent(
                    "command",
                    "a command destination runs only for notifications",
                ));
            };
            let argv = notification.setting_list("argv").unwrap_or_default();
            let stdin = notification.setting("stdin").map(str::to_owned);
            let timeout = self.settings.timeout.value;
            let fail = self.settings.fail_on_non_zero_exit;
            tokio::task::spawn_blocking(move || run(&argv, stdin, timeout, fail))
                .await
                .map_err(|e| SinkError::transient("command", e.to_string()))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_without_a_shell_feeds_stdin_and_minds_exit_codes_and_timeouts() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let argv = |s: &str| -> Vec<String> {
            vec![
                "sh".into(),
                "-c".into(),
                s.into(),
                "x".into(),
                out.display().to_string(),
            ]
        };
        run(
            &argv("cat > \"$1\""),
            Some("hello $HOME".into()),
            Duration::from_secs(5),
            true,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello $HOME");
        assert!(run(&argv("exit 3"), None, Duration::from_secs(5), false).is_ok());
        let e = run(&argv("exit 3"), None, Duration::from_secs(5), true).unwrap_err();
        assert!(!e.is_transient() && e.to_string().contains("exit"), "{e}");
        let e = run(&argv("sleep 5"), None, Duration::from_millis(100), true).unwrap_err();
        assert!(e.is_transient() && e.to_string().contains("stopped"), "{e}");
        let e = run(
            &["/nonexistent/x".into()],
            None,
            Duration::from_secs(1),
            true,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot run"), "{e}");
    }
}
