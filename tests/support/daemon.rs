//! Starting the real `esalert run` binary and following its alerts.log.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running daemon. Dropping it kills the process.
pub struct Daemon {
    pub child: Child,
    log_dir: std::path::PathBuf,
}

impl Daemon {
    /// Starts `esalert run` in `dir` with extra arguments and environment.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("esalert"));
        c.current_dir(dir)
            .arg("run")
            .args(args)
            .env("ESALERT_TEST_PW", "pw")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().expect("start esalert run");
        Daemon {
            child,
            log_dir: dir.to_owned(),
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Every alerts.log line so far, parsed.
    pub fn lines(&self) -> Vec<BTreeMap<String, String>> {
        super::log_lines(&self.log_dir)
    }

    /// Waits until some line satisfies `pred`, returning it.
    pub fn wait_line(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> BTreeMap<String, String> {
        let start = Instant::now();
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            if start.elapsed() > timeout {
                panic!(
                    "no line for {what} within {timeout:?}; log:\n{:#?}",
                    self.lines()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if start.elapsed() > timeout {
                panic!("esalert did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `k=v` equality on a parsed line.
pub fn has(l: &BTreeMap<String, String>, k: &str, v: &str) -> bool {
    l.get(k).map(String::as_str) == Some(v)
}
