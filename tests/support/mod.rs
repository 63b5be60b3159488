//! Shared test support: an Elasticsearch stand-in on 127.0.0.1 that answers
//! with real Elasticsearch response shapes, plus helpers for temp projects.
//!
//! The stand-in runs on its own thread and runtime, so both async library
//! tests and blocking CLI tests can use it. Set `ESALERT_TEST_ES_URL` to run
//! the cluster-agnostic tests against a real cluster instead (see
//! [`Cluster`]); fault-injection tests always use the stand-in.
#![allow(dead_code, unused_imports)]

pub mod daemon;
pub mod es;
pub mod opensearch;
pub mod slack;
pub mod smtp;

use std::path::{Path, PathBuf};

pub use es::{EsStandIn, Reply};
pub use slack::{SlackReply, SlackStandIn};
pub use smtp::SmtpServer;

/// A throwaway project directory with `queries/`, as a user would lay it out.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("queries")).unwrap();
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn queries(&self) -> PathBuf {
        self.dir.path().join("queries")
    }

    /// Writes `queries/<name>.json`.
    pub fn alert(&self, name: &str, text: &str) -> PathBuf {
        let p = self.queries().join(format!("{name}.json"));
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Writes credentials.json pointing at `es_url`, mode 600.
    pub fn credentials(&self, es_url: &str) -> PathBuf {
        self.credentials_with(es_url, None, None)
    }

    /// Writes credentials.json with optional `slack` and `email` sections.
    pub fn credentials_with(
        &self,
        es_url: &str,
        slack: Option<serde_json::Value>,
        email: Option<serde_json::Value>,
    ) -> PathBuf {
        let p = self.dir.path().join("credentials.json");
        let mut text = serde_json::json!({
            "elasticsearch": {"url": es_url, "username": "elastic", "password": "${ESALERT_TEST_PW}", "timeout": "2s"}
        });
        if let Some(s) = slack {
            text["slack"] = s;
        }
        if let Some(e) = email {
            text["email"] = e;
        }
        std::fs::write(&p, serde_json::to_string_pretty(&text).unwrap()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        p
    }
}

/// The built `esalert` binary, run in `dir` with no `ESALERT_*` settings
/// inherited from the environment and `ESALERT_TEST_PW` set to `pw`.
pub fn esalert_in(dir: &Path, pw: &str) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("esalert").unwrap();
    c.current_dir(dir)
        .env_remove("ESALERT_QUERIES")
        .env_remove("ESALERT_CREDENTIALS")
        .env_remove("ESALERT_LOG_DIR")
        .env("ESALERT_TEST_PW", pw);
    c
}

/// The repository root (for shipped examples and fixtures).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A cluster for tests that don't inject faults: the real one named by
/// `ESALERT_TEST_ES_URL`, or a stand-in that answers every search with a
/// valid 8.x response.
pub enum Cluster {
    Real(String),
    StandIn(EsStandIn),
}

impl Cluster {
    pub fn start() -> Cluster {
        match std::env::var("ESALERT_TEST_ES_URL") {
            Ok(url) if !url.is_empty() => Cluster::Real(url),
            _ => {
                let es = EsStandIn::start();
                es.set_default(Reply::total_v8(0, "eq"));
                Cluster::StandIn(es)
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            Cluster::Real(u) => u.clone(),
            Cluster::StandIn(s) => s.url.clone(),
        }
    }
}

/// Parses one logfmt line into key/value pairs, failing on malformed input.
pub fn logfmt(line: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        assert_eq!(chars.next(), Some('='), "no '=' after {key:?} in {line:?}");
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars
                    .next()
                    .unwrap_or_else(|| panic!("unterminated quote in {line:?}"))
                {
                    '\\' => match chars.next().unwrap() {
                        'n' => val.push('\n'),
                        't' => val.push('\t'),
                        'r' => val.push('\r'),
                        c => val.push(c),
                    },
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            val = std::iter::from_fn(|| chars.next_if(|c| *c != ' ')).collect();
        }
        assert!(!key.is_empty() && !key.contains(' '), "bad key in {line:?}");
        out.insert(key, val);
    }
}

/// Every alerts.log line in `dir` so far, parsed (none if there's no log yet).
pub fn log_lines(dir: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    std::fs::read_to_string(dir.join("alerts.log"))
        .unwrap_or_default()
        .lines()
        .map(logfmt)
        .collect()
}
