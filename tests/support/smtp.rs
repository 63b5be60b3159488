//! A real SMTP server (Python's aiosmtpd) started per test.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// One received message.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub data: String,
    /// The user that authenticated (servers started with
    /// [`SmtpServer::start_with_login`]).
    #[serde(default)]
    pub login: Option<String>,
}

/// The running server. Dropping it stops the server.
pub struct SmtpServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

fn python() -> String {
    let candidates = [
        std::env::var("ESALERT_TEST_PYTHON").unwrap_or_default(),
        "python3".into(),
        "/usr/bin/python3".into(),
    ];
    for p in candidates.iter().filter(|p| !p.is_empty()) {
        let ok = Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return p.clone();
        }
    }
    panic!(
        "no python3 with aiosmtpd: install python3-aiosmtpd (apt) or `pip install aiosmtpd`; .ci/run does"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        Self::start_inner(None)
    }

    /// A server that requires AUTH (PLAIN or LOGIN, without TLS) with this
    /// user and password.
    pub fn start_with_login(user: &str, password: &str) -> SmtpServer {
        Self::start_inner(Some(format!("{user}:{password}")))
    }

    fn start_inner(login: Option<String>) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let script: PathBuf = super::repo().join("tests/support/smtp_server.py");
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(python())
                .arg(&script)
                .arg(port.to_string())
                .arg(dir.path())
                .args(login.iter())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start smtp_server.py");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            if line.trim() == "READY" {
                return SmtpServer { port, dir, child };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("SMTP server did not start");
    }

    /// "ok", "451", "550" or "slow".
    pub fn set_mode(&self, mode: &str) {
        std::fs::write(self.dir.path().join("mode"), mode).unwrap();
    }

    /// Messages received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// The `email` section of credentials.json for this server.
    pub fn credentials(&self) -> serde_json::Value {
        serde_json::json!({"smtp_host": "127.0.0.1", "smtp_port": self.port, "security": "none",
            "from": "esalert <alerts@example.com>", "to": ["soc@example.com"], "timeout": "3s"})
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
