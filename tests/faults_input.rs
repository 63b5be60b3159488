//! Fault injection on esalert's inputs (issue 12): wall-clock steps, values
//! out of range in alert and watch files, memory bombs in scripts and
//! templates, special files in queries/, a deleted store lock, file modes,
//! and journald priorities.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use support::daemon::{Daemon, has};
use support::{EsStandIn, Project, Reply, SlackStandIn};

/// The binary's allocator, so that in-process evaluations have their
/// memory budgets as in the daemon.
#[global_allocator]
static ALLOC: esalert::alloc_budget::CountingAlloc = esalert::alloc_budget::CountingAlloc;

const T: Duration = Duration::from_secs(20);

fn wait_until(what: &str, timeout: Duration, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn windowed(schedule: &str) -> String {
    json!({"index": "logs-*", "schedule": schedule, "throttle_period": "1h",
        "body": {"query": {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}}},
        "message": "{{ hits.total.value }} hits"})
    .to_string()
}

fn window_end(r: &support::es::Recorded) -> DateTime<Utc> {
    let lt = r.body["query"]["range"]["@timestamp"]["lt"]
        .as_str()
        .expect("a templated window");
    DateTime::parse_from_rfc3339(lt).unwrap().to_utc()
}

/// A test may make the code under test allocate without bound (that is what
/// the memory tests check it doesn't). Cap the address space so that a
/// regression fails the test instead of exhausting the machine.
fn cap_address_space(cmd: &mut Command) {
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 4 << 30,
                rlim_max: 4 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
}

/// `esalert run` in `dir` with its address space capped.
fn start_capped(dir: &Path) -> Child {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("esalert"));
    c.current_dir(dir)
        .arg("run")
        .env("ESALERT_TEST_PW", "pw")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cap_address_space(&mut c);
    c.spawn().expect("start esalert run")
}

/// Kills a child started here when the test ends, however it ends.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------- item 2

/// The wall clock as the system's plus an offset the test steps.
#[derive(Default)]
struct SteppedClock {
    offset_ms: AtomicI64,
}

impl SteppedClock {
    fn step(&self, by: chrono::TimeDelta) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl esalert::pipeline::Clock for SteppedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::TimeDelta::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
}

fn daemon_config(p: &Project) -> esalert::daemon::DaemonConfig {
    esalert::daemon::DaemonConfig {
        queries: p.queries(),
        credentials: p.path().join("credentials.json"),
        state: p.path().join("throttle_period.json"),
        log_dir: p.path().to_owned(),
        max_concurrency: 4,
        search_batch: 100,
        shutdown_grace: Duration::from_secs(2),
        listen: None,
        rescan: Duration::from_secs(30),
        tick_spread: Duration::ZERO,
        stuck_after: Duration::from_secs(300),
        settings: esalert::pipeline::Settings::default(),
        lease: esalert::cluster::DEFAULT_LEASE,
        broken_shared_state: false,
    }
}

/// The daemon in-process on a clock the test steps, with one windowed
/// alert on `schedule`; stopped when dropped.
struct SteppedDaemon {
    es: EsStandIn,
    clock: Arc<SteppedClock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
    _project: Project,
}

impl SteppedDaemon {
    fn start(schedule: &str) -> SteppedDaemon {
        let es = EsStandIn::start();
        es.set_default(Reply::total_v8(0, "eq"));
        let p = Project::new();
        // A literal password: no environment to set in a threaded test.
        let creds = p.path().join("credentials.json");
        let text = json!({"elasticsearch": {"url": es.url, "username": "elastic", "password": "pw", "timeout": "2s"}});
        std::fs::write(&creds, text.to_string()).unwrap();
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
        p.alert("steady", &windowed(schedule));
        esalert::install_crypto_provider();
        let cfg = daemon_config(&p);
        let clock = Arc::new(SteppedClock::default());
        let daemon_clock = clock.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                esalert::daemon::run_with_clock(cfg, daemon_clock, async move {
                    let _ = rx.await;
                })
                .await
                .expect("daemon runs");
            });
        });
        SteppedDaemon {
            es,
            clock,
            stop: Some(tx),
            handle: Some(handle),
            _project: p,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        esalert::pipeline::Clock::now(self.clock.as_ref())
    }
}

impl Drop for SteppedDaemon {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn clock_step_back_one_hour_runs_within_one_period() {
    let d = SteppedDaemon::start("2s");
    let (es, clock) = (&d.es, &d.clock);
    wait_until("a first search", T, || !es.searches().is_empty());

    clock.step(chrono::TimeDelta::hours(-1));
    let stepped_at = Instant::now();
    let before = es.searches().len();
    // One period is 2s; allow the tick's second and some slack, far from an hour.
    wait_until(
        "a search after the step back",
        Duration::from_secs(8),
        || es.searches().len() > before,
    );
    assert!(stepped_at.elapsed() < Duration::from_secs(8));
    // Its window ends at the stepped clock's time, not an hour ahead of it.
    let after = es.searches();
    let end = window_end(&after[before]);
    let now = d.now();
    assert!(
        end <= now,
        "window end {end} is ahead of the wall clock {now}"
    );
}

#[test]
fn clock_step_forward_then_back_keeps_searching_windows_that_ended() {
    let d = SteppedDaemon::start("1m");
    let (es, clock) = (&d.es, &d.clock);
    std::thread::sleep(Duration::from_secs(2));
    // Two hours ahead, and corrected five seconds later (an NTP fix).
    clock.step(chrono::TimeDelta::hours(2));
    std::thread::sleep(Duration::from_secs(5));
    let before = es.searches().len();
    clock.step(chrono::TimeDelta::hours(-2));
    // A `1m` alert must search again within a minute of the correction, not
    // in two hours. Shift the clock to just before a minute boundary so the
    // test needn't wait for one.
    let now = d.now();
    let to_boundary = 60_000 - (now.timestamp_millis().rem_euclid(60_000)) - 1_500;
    clock.step(chrono::TimeDelta::milliseconds(to_boundary));
    wait_until(
        "a search after the correction",
        Duration::from_secs(8),
        || es.searches().len() > before,
    );
    let searches = es.searches();
    let now = d.now();
    for s in &searches[before..] {
        let end = window_end(s);
        assert!(end <= now, "window end {end} is ahead of the clock {now}");
    }
}

// ---------------------------------------------------------------- item 3

/// `esalert check --queries-only`: its exit code and everything it printed.
fn check(p: &Project) -> (Option<i32>, String) {
    let out = assert_cmd::Command::cargo_bin("esalert")
        .unwrap()
        .current_dir(p.path())
        .args(["check", "--queries-only"])
        .timeout(T)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn durations_over_a_year_and_date_math_out_of_range_are_check_errors() {
    let p = Project::new();
    let base = |k: &str, v: &str| {
        let mut a = json!({"index": "a", "body": {}, "message": "m"});
        a[k] = json!(v);
        a.to_string()
    };
    p.alert("throttle", &base("throttle_period", "1000000y"));
    p.alert("delay", &base("query_delay", "1000000y"));
    p.alert("catchup", &base("max_catchup", "400d"));
    p.alert("every", &base("schedule", "2y"));
    let watch = |extra: Value| {
        let mut w = json!({"trigger": {"schedule": {"interval": "5m"}},
            "input": {"search": {"request": {"indices": ["logs"], "body": {}}}},
            "actions": {"log": {"logging": {"text": "x"}}}});
        if let (Value::Object(m), Value::Object(e)) = (&mut w, extra) {
            m.extend(e);
        }
        serde_json::to_string_pretty(&w).unwrap()
    };
    p.alert(
        "w_datemath",
        &watch(json!({"input": {"search": {"request": {"indices": ["<logs-{now-9999999999d}>"], "body": {}}}}})),
    );
    p.alert(
        "w_millis",
        &watch(json!({"throttle_period_in_millis": 99_999_999_999_999u64})),
    );
    p.alert(
        "w_interval",
        &watch(json!({"trigger": {"schedule": {"interval": "100000000000"}}})),
    );
    let (code, text) = check(&p);
    assert_eq!(code, Some(1), "no panic, exit 1:\n{text}");
    assert!(!text.contains("panicked"), "{text}");
    for name in [
        "throttle",
        "delay",
        "catchup",
        "every",
        "w_millis",
        "w_interval",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("{name}.json:")))
            .unwrap_or_else(|| panic!("no problem for {name}:\n{text}"));
        // path:line:col: ... must be at most 365d (1 year)
        let after = line.split(&format!("{name}.json:")).nth(1).unwrap();
        let mut parts = after.splitn(3, ':');
        assert!(parts.next().unwrap().parse::<usize>().is_ok(), "{line}");
        assert!(parts.next().unwrap().parse::<usize>().is_ok(), "{line}");
        assert!(line.contains("must be at most 365d (1 year)"), "{line}");
    }
    let line = text
        .lines()
        .find(|l| l.contains("w_datemath.json:"))
        .unwrap_or_else(|| panic!("no problem for w_datemath:\n{text}"));
    assert!(line.contains("out of the supported date range"), "{line}");
}

// ---------------------------------------------------------------- item 4

/// In a test process, a regression would allocate until the machine runs out.
fn cap_this_process() {
    let lim = libc::rlimit {
        rlim_cur: 8 << 30,
        rlim_max: 8 << 30,
    };
    // SAFETY: setrlimit on our own process with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
}

const SCRIPT_BOMB: &str = r#"let s = "x"; for i in 0..19 { s += s; }
let m = #{}; for i in 0..100000 { m["k" + i] = s + i; } true"#;

#[test]
fn a_script_filling_a_map_with_big_strings_fails_fast_in_process() {
    cap_this_process();
    let engine = esalert::condition::ScriptEngine::default();
    let script = engine.compile(SCRIPT_BOMB).unwrap();
    let start = Instant::now();
    let err = engine.run(&script, &json!({})).unwrap_err();
    assert!(
        matches!(err, esalert::condition::ScriptError::TooMuchMemory { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("64 MiB"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    // The engine is fine afterwards.
    let ok = engine.compile("response.n > 1").unwrap();
    assert!(engine.run(&ok, &json!({"n": 2})).unwrap().matched);
}

const TEMPLATE_BOMB: &str = r#"{% set ns = namespace(s="xxxxxxxx") %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"#;

fn render(message: &str) -> Result<esalert::render::Rendered, esalert::render::RenderError> {
    let t = esalert::render::Templates::compile("bomb", "s", message, &Value::Null)
        .map_err(|e| e.into_iter().next().unwrap().error)?;
    let window = esalert::render::Window {
        start: Utc::now(),
        end: Utc::now(),
    };
    t.render_message(&esalert::render::MessageVars {
        response: &Arc::new(json!({"hits": {"total": {"value": 1}}})),
        alert: &esalert::render::AlertInfo {
            name: "bomb".into(),
            description: String::new(),
            index: "i".into(),
        },
        now: Utc::now(),
        window,
        slack: true,
        html: true,
        group: None,
        resolved: false,
    })
}

#[test]
fn a_template_doubling_a_string_fails_fast_in_process() {
    cap_this_process();
    let start = Instant::now();
    let err = render(TEMPLATE_BOMB).unwrap_err();
    assert!(
        matches!(err, esalert::render::RenderError::TooMuchMemory { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("alert bomb"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
    // Output is capped too, with its own error.
    let err = render(r#"{% for i in range(100000) %}{{ "x" * 100 }}{% endfor %}"#).unwrap_err();
    assert!(
        matches!(err, esalert::render::RenderError::TooLarge { .. }),
        "{err}"
    );
    // And an ordinary template still renders.
    let ok = render("{{ hits.total.value }} hit").unwrap();
    assert_eq!(ok.text, "1 hit");
}

#[test]
fn memory_bombs_are_their_alerts_errors_and_the_daemon_keeps_running() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(3, "eq"));
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert(
        "bomb_script",
        &json!({"index": "a", "schedule": "1s", "body": {}, "message": "m",
            "condition": {"script": SCRIPT_BOMB}})
        .to_string(),
    );
    p.alert(
        "bomb_template",
        &json!({"index": "b", "schedule": "1s", "body": {}, "message": TEMPLATE_BOMB,
            "condition": {"always": {}}, "throttle_period": "0s"})
        .to_string(),
    );
    p.alert("normal", &windowed("1s"));
    let mut d = Reaper(start_capped(p.path()));
    let lines = || support::log_lines(p.path());
    let error_of = |name: &str| {
        lines()
            .into_iter()
            .find(|l| has(l, "alert", name) && has(l, "outcome", "error"))
    };
    // A template over its budget on a real match is not the match's end:
    // a fallback message naming the error is sent instead.
    let template_errors = || {
        lines()
            .into_iter()
            .filter(|l| has(l, "alert", "bomb_template") && has(l, "event", "template_error"))
            .collect::<Vec<_>>()
    };
    wait_until(
        "the script bomb's error and the template bomb's fallback",
        T,
        || error_of("bomb_script").is_some() && !template_errors().is_empty(),
    );
    let e = error_of("bomb_script").unwrap();
    assert!(e["error"].contains("memory"), "{e:?}");
    let e = &template_errors()[0];
    assert!(e["error"].contains("memory"), "{e:?}");
    assert!(error_of("bomb_template").is_none());
    // Again and again, and the normal alert keeps running meanwhile.
    let normal_runs = || {
        es.searches()
            .iter()
            .filter(|r| r.path.contains("logs-*"))
            .count()
    };
    let before = normal_runs();
    wait_until("three more runs of the normal alert", T, || {
        normal_runs() >= before + 3
    });
    assert!(
        template_errors().len() >= 2,
        "the bomb keeps failing its render, each run"
    );
    let fallbacks = slack
        .delivered()
        .iter()
        .filter(|p| {
            p.body.to_string().contains("bomb_template") && p.body.to_string().contains("memory")
        })
        .count();
    assert!(fallbacks >= 2, "each run's match is sent with the fallback");
    assert!(d.0.try_wait().unwrap().is_none(), "the daemon is alive");
}

// ---------------------------------------------------------------- item 5

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

fn special_files(p: &Project) {
    mkfifo(&p.queries().join("fifo.json"));
    std::os::unix::fs::symlink("/dev/zero", p.queries().join("zero.json")).unwrap();
    let f = std::fs::File::create(p.queries().join("sparse.json")).unwrap();
    f.set_len(8 << 30).unwrap();
}

#[test]
fn special_files_in_queries_are_rejected_and_a_normal_alert_keeps_running() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq"));
    let p = Project::new();
    p.credentials(&es.url);
    p.alert("normal", &windowed("1s"));
    special_files(&p);
    let _d = Reaper(start_capped(p.path()));
    wait_until("three runs of the normal alert", T, || {
        es.searches().len() >= 3
    });
    let lines = support::log_lines(p.path());
    for (name, what) in [
        ("fifo", "not a regular file (it is a FIFO)"),
        ("zero", "symlink points outside the queries directory"),
        ("sparse", "over the limit of 1048576 bytes"),
    ] {
        let l = lines
            .iter()
            .find(|l| has(l, "alert", name) && has(l, "event", "rejected"))
            .unwrap_or_else(|| panic!("{name} not rejected: {lines:#?}"));
        assert!(l["problem"].contains(what), "{l:?}");
    }
    // New special files while running are refused too, and don't stall it.
    mkfifo(&p.queries().join("late.json"));
    let before = es.searches().len();
    wait_until("the late FIFO rejected", T, || {
        support::log_lines(p.path())
            .iter()
            .any(|l| has(l, "alert", "late") && has(l, "event", "rejected"))
    });
    wait_until("more runs after it", T, || {
        es.searches().len() >= before + 2
    });

    // `check` reports them, and exits 1.
    let (code, text) = check(&p);
    assert_eq!(code, Some(1), "{text}");
    for name in ["fifo.json", "zero.json", "sparse.json", "late.json"] {
        assert!(text.contains(name), "{name} not reported:\n{text}");
    }
}

// ---------------------------------------------------------------- item 8

#[test]
fn deleting_the_lock_file_does_not_let_a_second_daemon_run() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(2, "eq"));
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert("once_only", &windowed("1s"));
    let a = Daemon::start(p.path(), &[], &[]);
    wait_until("a first delivery", T, || !slack.delivered().is_empty());
    let lock = p.path().join("throttle_period.json.lock");
    std::fs::remove_file(&lock).unwrap();

    let out = assert_cmd::Command::cargo_bin("esalert")
        .unwrap()
        .current_dir(p.path())
        .env("ESALERT_TEST_PW", "pw")
        .arg("run")
        .timeout(T)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "B must refuse:\n{stderr}");
    assert!(
        stderr.contains("in use by another esalert process"),
        "{stderr}"
    );
    // A runs on (its next write relocks the lock file) and the match went out once.
    let runs = es.searches().len();
    wait_until("A searching on", T, || es.searches().len() >= runs + 2);
    assert!(lock.exists(), "A locked a new lock file");
    assert_eq!(slack.delivered().len(), 1, "delivered once, not twice");
    drop(a);
}

// ---------------------------------------------------------------- item 15

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn store_lock_and_alerts_log_are_created_owner_only() {
    let p = Project::new();
    p.credentials("http://127.0.0.1:9");
    p.alert("a", r#"{"index": "a", "body": {}, "message": "m"}"#);
    let out = Command::new(assert_cmd::cargo::cargo_bin("esalert"))
        .current_dir(p.path())
        .env("ESALERT_TEST_PW", "pw")
        .args(["once", "--log-dir", "logs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the cluster is unreachable");
    let store = p.path().join("throttle_period.json");
    assert_eq!(mode(&store), 0o600, "store");
    assert_eq!(
        mode(&p.path().join("throttle_period.json.lock")),
        0o600,
        "lock"
    );
    // alerts.log is a symlink to the day's file; both that file's mode.
    let log = std::fs::canonicalize(p.path().join("logs/alerts.log")).unwrap();
    assert_eq!(mode(&log), 0o600, "alerts.log");
}

// ---------------------------------------------------------------- journald

#[test]
fn under_journald_stderr_lines_carry_their_syslog_priority() {
    use std::os::unix::fs::MetadataExt;
    let p = Project::new();
    p.credentials("http://127.0.0.1:9");
    p.alert("a", r#"{"index": "a", "body": {}, "message": "m"}"#);
    let err_path = p.path().join("stderr");
    let run = |journal: bool| {
        let f = std::fs::File::create(&err_path).unwrap();
        let m = f.metadata().unwrap();
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("esalert"));
        c.current_dir(p.path())
            .env("ESALERT_TEST_PW", "pw")
            .args(["once"])
            .stderr(f);
        if journal {
            c.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
        } else {
            c.env_remove("JOURNAL_STREAM");
        }
        c.status().unwrap();
        std::fs::read_to_string(&err_path).unwrap()
    };
    let journal = run(true);
    let lines: Vec<&str> = journal.lines().collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let want = if l.contains("level=ERROR") {
            "<3>ts="
        } else if l.contains("level=WARN") {
            "<4>ts="
        } else {
            "<6>ts="
        };
        assert!(l.starts_with(want), "{l}");
    }
    assert!(lines.iter().any(|l| l.starts_with("<3>")), "{journal}");
    // alerts.log has the same lines, without prefixes.
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    assert!(log.lines().all(|l| l.starts_with("ts=")), "{log}");
    // Outside journald (or with a JOURNAL_STREAM that isn't our stderr), no prefix.
    let plain = run(false);
    assert!(plain.lines().all(|l| l.starts_with("ts=")), "{plain}");
}
