//! Shared test support: an Elasticsearch stand-in on 127.0.0.1 that answers
//! with real Elasticsearch response shapes, plus helpers for temp projects.
//!
//! The stand-in runs on its own thread and runtime, so both async library
//! tests and blocking CLI tests can use it. Set `ESALERT_TEST_ES_URL` to run
//! the cluster-agnostic tests against a real cluster instead (see
//! [`Cluster`]); fault-injection tests always use the stand-in.
#![allow(dead_code, unused_imports)]

pub mod counting_proxy;
pub mod daemon;
pub mod discord;
pub mod docstore;
pub mod es;
pub mod jira;
pub mod opensearch;
pub mod opsgenie;
pub mod pagerduty;
pub mod peer;
pub mod proxy;
pub mod slack;
pub mod smtp;
pub mod teams;
pub mod telegram;
pub mod thehive;
pub mod webhook_peer;

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
        .env_remove("ESALERT_STATE")
        .env("ESALERT_TEST_PW", pw);
    c
}

/// `esalert check ARGS` in `dir`: the exit code and the lines printed.
pub fn check(dir: &Path, args: &[&str]) -> (i32, Vec<String>) {
    let out = esalert_in(dir, "pw")
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    (
        out.status.code().unwrap_or(-1),
        stdout.lines().map(str::to_owned).collect(),
    )
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

/// How long fault tests wait for something that should happen.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Polls `f` every 100 ms until it holds, failing after [`WAIT`].
pub fn wait_until(what: &str, f: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A response whose `sources` aggregation has one bucket per `(ip, count)`.
pub fn buckets(b: &[(&str, u64)]) -> Reply {
    let total = b.iter().map(|(_, n)| n).sum();
    Reply::with(
        total,
        serde_json::json!({"aggregations": {"sources": {"buckets":
            b.iter().map(|(k, n)| serde_json::json!({"key": k, "doc_count": n})).collect::<Vec<_>>()}}}),
    )
}

/// An alert on failed logins per source address ([`buckets`]), firing at 5,
/// throttled 1h; `extra` keys are merged over it.
pub fn grouped_alert(extra: serde_json::Value) -> String {
    let mut a = serde_json::json!({
        "index": "auth",
        "body": {"size": 0, "aggs": {"sources": {"terms": {"field": "source.ip"}}}},
        "group_by": {"path": "aggregations.sources.buckets", "key": "key"},
        "condition": {"compare": {"doc_count": {"gte": 5}}},
        "subject": "failed logins from {{ group.key }}",
        "message": "{{ group.count }} failed logins from {{ group.key }} ({{ response.hits.total.value }} in all)",
        "throttle_period": "1h",
    });
    if let (serde_json::Value::Object(a), serde_json::Value::Object(e)) = (&mut a, extra) {
        a.extend(e);
    }
    a.to_string()
}

/// An alert searching `logs-*` over its window, throttled 1h, whose message
/// names the window; `extra` keys are merged over it.
pub fn windowed(schedule: &str, extra: serde_json::Value) -> String {
    let mut a = serde_json::json!({"index": "logs-*", "schedule": schedule, "throttle_period": "1h",
        "body": {"query": {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}}},
        "message": "{{ hits.total.value }} hits between {{ window.start }} and {{ window.end }}"});
    if let (serde_json::Value::Object(m), serde_json::Value::Object(e)) = (&mut a, extra) {
        m.extend(e);
    }
    a.to_string()
}

/// The `(gte, lt)` of a search made by a [`windowed`] alert.
pub fn range(r: &es::Recorded) -> (String, String) {
    let t = &r.body["query"]["range"]["@timestamp"];
    (
        t["gte"].as_str().unwrap().to_owned(),
        t["lt"].as_str().unwrap().to_owned(),
    )
}

/// A port of 127.0.0.1 that nothing listens on (until someone binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:`port` over plain HTTP/1.0: status and body,
/// or status 0 when nothing answers.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (code, body)
}

/// An address that accepts TCP connections and never says a word (on its
/// own thread and runtime); it holds every connection until the test ends.
pub fn silent_peer() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
    });
    format!("http://{}", rx.recv().unwrap())
}
