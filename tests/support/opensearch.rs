//! A real search engine for `tests/cluster.rs`: the cluster named by
//! `ESALERT_TEST_ES_URL` when set (any Elasticsearch 7.x/8.x or OpenSearch),
//! else one OpenSearch 2.19.6 node started from `tests/opensearch/` (a Maven
//! project) once per test binary.
//!
//! The node's stdin is a pipe held by this process; the launcher stops the
//! node and deletes its data directory when the pipe closes, which happens
//! however the test binary exits. With `CI=true` a node that can't be started
//! fails the tests; elsewhere they say what is missing and return early.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

/// How long the node may take to start (cold JVM on a busy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// The line the launcher prints once HTTP is bound.
const READY_PREFIX: &str = "ESALERT_OPENSEARCH_HTTP=";

/// A reachable engine with a green or yellow cluster.
pub struct Engine {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// `version.distribution` (`opensearch`, or absent on Elasticsearch).
    pub distribution: String,
    /// `version.number`.
    pub version: String,
    /// Whether this process started the node (false for `ESALERT_TEST_ES_URL`).
    pub started_here: bool,
    /// How long the node took to answer health, when started here.
    pub startup: Option<Duration>,
    password: Option<String>,
    insecure: bool,
    // Held so the node lives as long as this process; never dropped.
    _node: Option<Mutex<(Child, ChildStdin)>>,
}

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

/// Whether the tests run under CI, where a missing engine is a failure.
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("true" | "1" | "yes")
    )
}

/// The shared engine, or `None` (outside CI) when none can be started; the
/// reason is printed once to the real stderr. Under CI it panics instead.
pub fn engine() -> Option<&'static Engine> {
    let r = ENGINE.get_or_init(|| {
        let r = start();
        if let Err(why) = &r
            && !in_ci()
        {
            // Straight to the terminal: libtest captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** tests/cluster.rs: no search engine, cluster tests are NOT run ***\n{why}\n"
            );
        }
        r
    });
    match r {
        Ok(e) => Some(e),
        Err(why) if in_ci() => panic!("CI=true and no search engine could be started:\n{why}"),
        Err(_) => None,
    }
}

fn how_to_run() -> &'static str {
    "To run them: install Java 17+ and Maven (Debian: apt-get install openjdk-17-jre-headless maven), \
     with Maven Central reachable; the tests build tests/opensearch/ and start an OpenSearch 2.19.6 node. \
     Or point them at a throwaway cluster: ESALERT_TEST_ES_URL=http://127.0.0.1:9200 \
     [ESALERT_TEST_ES_PASSWORD=... for user elastic] [ESALERT_TEST_ES_INSECURE=1 for a self-signed certificate] \
     cargo test --test cluster"
}

fn start() -> Result<Engine, String> {
    let insecure =
        std::env::var("ESALERT_TEST_ES_INSECURE").is_ok_and(|v| !v.is_empty() && v != "0");
    let password = std::env::var("ESALERT_TEST_ES_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    if let Ok(url) = std::env::var("ESALERT_TEST_ES_URL")
        && !url.is_empty()
    {
        let url = url.trim_end_matches('/').to_owned();
        return connect(url, password, insecure, None, None);
    }
    start_node(None)
}

/// A node of its own (not the shared [`engine`]) whose data lives in
/// `home` and is kept when it stops: tests/cluster_cost.rs indexes its
/// data set once and reuses it. Stop it with [`Engine::stop`].
pub fn start_kept(home: &Path) -> Result<Engine, String> {
    start_node(Some(home))
}

fn start_node(home: Option<&Path>) -> Result<Engine, String> {
    let started = Instant::now();
    let (child, stdin, url, log) = launch(home)?;
    connect(
        url,
        None,
        false,
        Some(Mutex::new((child, stdin))),
        Some((started, log)),
    )
}

type Log = Arc<Mutex<Vec<String>>>;

fn tail(log: &Log) -> String {
    let l = log.lock().unwrap();
    let from = l.len().saturating_sub(60);
    l[from..].join("\n")
}

fn connect(
    url: String,
    password: Option<String>,
    insecure: bool,
    node: Option<Mutex<(Child, ChildStdin)>>,
    started: Option<(Instant, Log)>,
) -> Result<Engine, String> {
    let mut e = Engine {
        url,
        distribution: String::new(),
        version: String::new(),
        started_here: node.is_some(),
        startup: None,
        password,
        insecure,
        _node: node,
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let health = loop {
        let r = e.call(
            "GET",
            "/_cluster/health?wait_for_status=yellow&timeout=20s",
            None,
        );
        match r {
            Ok((200, v)) if matches!(v["status"].as_str(), Some("green" | "yellow")) => break v,
            other if Instant::now() > deadline => {
                let log = started.as_ref().map(|(_, l)| tail(l)).unwrap_or_default();
                return Err(format!(
                    "{} did not report green/yellow health within 90s: {other:?}\n{log}\n{}",
                    e.url,
                    how_to_run()
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    let (_, root) = e
        .call("GET", "/", None)
        .map_err(|x| format!("GET {}/: {x}", e.url))?;
    e.distribution = root["version"]["distribution"]
        .as_str()
        .unwrap_or("elasticsearch")
        .to_owned();
    e.version = root["version"]["number"].as_str().unwrap_or("?").to_owned();
    e.startup = started.map(|(t, _)| t.elapsed());
    let _ = writeln!(
        std::io::stderr(),
        "cluster tests: {} {} at {} (health {}{})",
        e.distribution,
        e.version,
        e.url,
        health["status"].as_str().unwrap_or("?"),
        e.startup
            .map(|d| format!(", node started in {:.1}s", d.as_secs_f64()))
            .unwrap_or_default()
    );
    Ok(e)
}

/// The launcher's directory, `tests/opensearch`.
fn project() -> PathBuf {
    super::repo().join("tests/opensearch")
}

fn newest(paths: &[PathBuf]) -> Option<SystemTime> {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

/// `target/classes` plus the resolved dependencies, building with Maven
/// when the launcher is missing or older than its sources.
fn classpath() -> Result<String, String> {
    let dir = project();
    let cp_file = dir.join("target/classpath.txt");
    let class = dir.join("target/classes/esalert/opensearch/Launcher.class");
    let sources = [
        dir.join("pom.xml"),
        dir.join("src/main/java/esalert/opensearch/Launcher.java"),
    ];
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let built = mtime(&cp_file).zip(mtime(&class)).map(|(a, b)| a.min(b));
    let fresh = |cp: &str| {
        built.zip(newest(&sources)).is_some_and(|(b, s)| b >= s)
            && cp.split(':').all(|j| Path::new(j).exists())
    };
    if let Ok(cp) = std::fs::read_to_string(&cp_file)
        && fresh(cp.trim())
    {
        return Ok(format!(
            "{}:{}",
            dir.join("target/classes").display(),
            cp.trim()
        ));
    }
    let mvn = which("mvn").ok_or_else(|| {
        format!(
            "Maven (mvn) is not on PATH, and the launcher in tests/opensearch/ is not built.\n{}",
            how_to_run()
        )
    })?;
    let out = Command::new(mvn)
        .args(["-q", "-B", "-f"])
        .arg(dir.join("pom.xml"))
        .arg("compile")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running mvn: {e}\n{}", how_to_run()))?;
    if !out.status.success() {
        return Err(format!(
            "mvn -f tests/opensearch/pom.xml compile failed ({}):\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            how_to_run()
        ));
    }
    let cp = std::fs::read_to_string(&cp_file)
        .map_err(|e| format!("{}: {e} (after mvn compile)", cp_file.display()))?;
    Ok(format!(
        "{}:{}",
        dir.join("target/classes").display(),
        cp.trim()
    ))
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(cmd))
        .find(|p| p.is_file())
}

fn java() -> Result<PathBuf, String> {
    let from_home = std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin/java"))
        .filter(|p| p.is_file());
    let java = from_home.or_else(|| which("java")).ok_or_else(|| {
        format!(
            "Java is not installed (no java on PATH, no JAVA_HOME).\n{}",
            how_to_run()
        )
    })?;
    let out = Command::new(&java)
        .arg("-version")
        .output()
        .map_err(|e| format!("{}: {e}\n{}", java.display(), how_to_run()))?;
    let text = String::from_utf8_lossy(&out.stderr);
    // `openjdk version "17.0.15"`, `java version "21"`, `"1.8.0_392"`.
    let major: u32 = text
        .split('"')
        .nth(1)
        .and_then(|v| v.split(['.', '-', '+']).next())
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 17 {
        return Err(format!(
            "{} is not Java 17 or newer ({}).\n{}",
            java.display(),
            text.lines().next().unwrap_or("?"),
            how_to_run()
        ));
    }
    Ok(java)
}

fn launch(home: Option<&Path>) -> Result<(Child, ChildStdin, String, Log), String> {
    let java = java()?;
    let cp = classpath()?;
    let mut child = Command::new(java)
        .args([
            "-Xms512m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-Dlog4j2.disable.jmx=true",
        ])
        .args(home.map(|h| format!("-Desalert.opensearch.home={}", h.display())))
        .arg("-cp")
        .arg(cp)
        .arg("esalert.opensearch.Launcher")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting java: {e}"))?;
    let stdin = child.stdin.take().expect("piped stdin");
    let log: Log = Arc::default();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    for (stream, ready) in [
        (Box::new(stdout) as Box<dyn std::io::Read + Send>, Some(tx)),
        (Box::new(stderr), None),
    ] {
        let log = log.clone();
        // Drain both pipes for the node's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let (Some(tx), Some(addr)) = (&ready, line.strip_prefix(READY_PREFIX)) {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
                }
                let mut l = log.lock().unwrap();
                if l.len() >= 2000 {
                    l.drain(..1000);
                }
                l.push(line);
            }
        });
    }
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(addr) => return Ok((child, stdin, format!("http://{addr}"), log)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            std::thread::sleep(Duration::from_millis(200));
            return Err(format!(
                "the OpenSearch launcher exited ({status}) before serving HTTP:\n{}",
                tail(&log)
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "the OpenSearch node did not serve HTTP within {START_TIMEOUT:?}:\n{}",
                tail(&log)
            ));
        }
    }
}

impl Engine {
    /// The `elasticsearch` section of credentials.json for this engine.
    pub fn credentials(&self) -> Value {
        let mut v = json!({"url": self.url, "timeout": "20s"});
        if self.password.is_some() {
            v["username"] = json!("elastic");
            v["password"] = json!("${ESALERT_TEST_ES_PASSWORD}");
        }
        if self.insecure {
            v["insecure"] = json!(true);
        }
        v
    }

    /// Stops a node started here and waits (up to 60 s) until it has closed,
    /// so that its kept data directory can be opened again at once.
    pub fn stop(self) {
        let Some(node) = self._node else { return };
        let (mut child, stdin) = node.into_inner().unwrap_or_else(|p| p.into_inner());
        // The launcher closes the node when its stdin reaches end-of-file.
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether this is OpenSearch (error texts differ slightly from Elasticsearch).
    pub fn is_opensearch(&self) -> bool {
        self.distribution == "opensearch"
    }

    /// One HTTP request; returns the status and the JSON body (`Null` when
    /// it isn't JSON). Usable from sync and async tests alike.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let body = body.map(|b| b.to_string().into_bytes());
        self.raw(method, path, body, "application/json")
    }

    /// `call` that must succeed with 2xx.
    pub fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        match self.call(method, path, body) {
            Ok((s, v)) if (200..300).contains(&s) => v,
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    /// Indexes documents with one `_bulk` request (`refresh=true`) and
    /// checks that every one was accepted.
    pub fn bulk(&self, index: &str, docs: &[Value]) {
        let mut nd = String::new();
        for d in docs {
            nd.push_str(&json!({"index": {"_index": index}}).to_string());
            nd.push('\n');
            nd.push_str(&d.to_string());
            nd.push('\n');
        }
        let (status, v) = self
            .raw(
                "POST",
                "/_bulk?refresh=true",
                Some(nd.into_bytes()),
                "application/x-ndjson",
            )
            .unwrap_or_else(|e| panic!("bulk into {index}: {e}"));
        assert_eq!(status, 200, "bulk into {index}: {v}");
        assert_eq!(v["errors"], json!(false), "bulk into {index}: {v}");
        assert_eq!(v["items"].as_array().map(Vec::len), Some(docs.len()));
    }

    /// Deletes `index` if it exists, then creates it with `mappings`.
    pub fn recreate(&self, index: &str, mappings: Value) {
        let (s, v) = self.call("DELETE", &format!("/{index}"), None).unwrap();
        assert!(s == 200 || s == 404, "DELETE {index}: {s} {v}");
        self.ok(
            "PUT",
            &format!("/{index}"),
            Some(&json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": mappings})),
        );
    }

    /// One request with a raw body of `content_type` (e.g. NDJSON for `_bulk`).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: &'static str,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.url);
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let auth = self.password.clone();
        let insecure = self.insecure;
        // Own thread and runtime, so that async tests may call this too.
        std::thread::spawn(move || {
            esalert::install_crypto_provider();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let client = reqwest::Client::builder()
                    .danger_accept_invalid_certs(insecure)
                    .timeout(Duration::from_secs(60))
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut req = client.request(method, &url);
                if let Some(pw) = auth {
                    req = req.basic_auth("elastic", Some(pw));
                }
                if let Some(b) = body {
                    req = req.header("content-type", content_type).body(b);
                }
                let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
                Ok((
                    status,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                ))
            })
        })
        .join()
        .map_err(|_| "request thread panicked".to_owned())?
    }
}
