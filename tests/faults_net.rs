//! Network and secrets faults (issue 12): peers that never answer, huge or
//! endless answers, redirects, Slack 429s of every shape, passwords in the
//! cluster URL and in parse errors, SMTP auth in clear, credentials file
//! permissions, and errors said once.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use esalert::alert::ByteSize;
use esalert::config::{EsConfig, SlackConfig};
use esalert::notify::slack::SlackNotifier;
use esalert::notify::{Notification, Notifier};
use esalert::render::Rendered;
use esalert::search::{EsClient, SearchError};
use serde_json::{Value, json};
use support::daemon::{Daemon, has};
use support::{EsStandIn, Project, Reply, SlackReply, SlackStandIn, wait_until};

const T: Duration = Duration::from_secs(20);

fn esalert(dir: &Path) -> Command {
    let mut c = support::esalert_in(dir, "pw");
    c.env_remove("JOURNAL_STREAM");
    c
}

/// Writes credentials.json as given, mode 600.
fn credentials(p: &Project, v: &Value) -> std::path::PathBuf {
    let path = p.path().join("credentials.json");
    std::fs::write(&path, serde_json::to_string_pretty(v).unwrap()).unwrap();
    chmod(&path, 0o600);
    path
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn notification() -> Notification {
    Notification::of(
        "net",
        Rendered::from_data("subject".into(), "message".into()),
        1,
        chrono::Utc::now(),
    )
}

fn slack(cfg: Value) -> SlackNotifier {
    esalert::install_crypto_provider();
    let cfg: SlackConfig = serde_json::from_value(cfg).unwrap();
    SlackNotifier::new(&cfg).unwrap()
}

fn es_client(cfg: Value) -> EsClient {
    esalert::install_crypto_provider();
    let cfg: EsConfig = serde_json::from_value(cfg).unwrap();
    EsClient::new(&cfg).unwrap()
}

/// The `error` of alert `name`'s `outcome=error` line in `dir`'s alerts.log.
fn error_of(dir: &Path, name: &str) -> String {
    let lines = support::log_lines(dir);
    let l = lines
        .iter()
        .find(|l| has(l, "alert", name) && has(l, "outcome", "error"))
        .unwrap_or_else(|| panic!("no error line for {name}: {lines:#?}"));
    l["error"].clone()
}

const MATCH_ALL: &str = r#"{"index": "logs-*", "schedule": "1s", "throttle_period": "1h",
  "body": {"query": {"match_all": {}}}, "message": "{{ hits.total.value }} hits"}"#;

// ---- 1. overall timeouts -------------------------------------------------

#[tokio::test]
async fn slack_peer_that_never_answers_fails_the_send_within_the_timeout() {
    let peer = support::silent_peer();
    for cfg in [
        json!({"webhook_url": format!("{peer}/hooks/T/B/X"), "timeout": "1s"}),
        json!({"token": "xoxb-1", "channel": "#a", "api_url": format!("{peer}/api"), "timeout": "1s"}),
    ] {
        let s = slack(cfg.clone());
        let started = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(10), s.send(&notification()))
            .await
            .unwrap_or_else(|_| panic!("the send hung past 10s: {cfg}"));
        let e = r.unwrap_err();
        let took = started.elapsed();
        assert!(e.is_transient(), "{e}");
        assert!(
            e.to_string().contains("no answer from Slack within 1s"),
            "{e}"
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert!(
            !e.to_string().contains("/hooks/"),
            "secret path leaked: {e}"
        );
    }
}

// ---- 6. response cap -----------------------------------------------------

#[tokio::test]
async fn search_answer_over_the_default_cap_is_an_error_naming_it() {
    let es = EsStandIn::start();
    let pad = "x".repeat(11 * 1024 * 1024);
    es.push(Reply::with(1, json!({"pad": pad})));
    let c = es_client(json!({"url": es.url, "timeout": "10s"}));
    let e = c.search(&["logs".into()], &json!({})).await.unwrap_err();
    assert!(matches!(e, SearchError::TooLarge { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("max_response_size (10MB)"), "{msg}");
    assert!(!e.is_transient(), "{msg}");
    // Under the cap, the same client reads it.
    es.push(Reply::with(1, json!({"pad": "x".repeat(1024 * 1024)})));
    c.search(&["logs".into()], &json!({})).await.unwrap();
}

// Multi-threaded: the server's drop waits for the client's connection task
// to close the socket, which must be able to run meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_search_answer_is_cut_at_the_alerts_cap() {
    // A chunked answer that never ends: only a streamed read with a cap
    // stops it (a plain read would run into the timeout, or out of memory).
    let server = support::es::Server::start(0, || {
        axum::Router::new().fallback(|| async {
            let chunk = axum::body::Bytes::from(vec![b' '; 8192]);
            let stream = futures::stream::repeat_with(move || {
                Ok::<_, std::convert::Infallible>(chunk.clone())
            });
            axum::body::Body::from_stream(stream)
        })
    });
    let url = format!("http://127.0.0.1:{}", server.port);
    let c = es_client(json!({"url": url, "timeout": "10s", "max_response_size": "64MB"}));
    let started = Instant::now();
    let cap = ByteSize::parse("256KB").unwrap();
    let e = c
        .search_limited(&["logs".into()], &json!({}), Some(cap))
        .await
        .unwrap_err();
    assert!(matches!(e, SearchError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("(256KB)"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn response_cap_from_credentials_fails_the_alert_and_alert_files_accept_the_key() {
    let es = EsStandIn::start();
    es.set_default(Reply::with(1, json!({"pad": "y".repeat(40_000)})));
    let s = SlackStandIn::start();
    let p = Project::new();
    credentials(
        &p,
        &json!({"elasticsearch": {"url": es.url, "max_response_size": "16KB"},
                "slack": s.webhook_credentials()}),
    );
    p.alert("big", MATCH_ALL);
    p.alert(
        "own_cap",
        r#"{"index": "a", "body": {}, "message": "m", "max_response_size": "2MB", "active": false}"#,
    );
    p.alert(
        "bad_cap",
        r#"{"index": "a", "body": {}, "message": "m", "active": false,
  "max_response_size": "2GB"}"#,
    );
    let out = esalert(p.path()).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("bad_cap.json:2:") && stdout.contains("1GB"),
        "{stdout}"
    );
    assert!(!stdout.contains("own_cap"), "{stdout}");
    std::fs::remove_file(p.queries().join("bad_cap.json")).unwrap();
    esalert(p.path()).arg("once").assert().failure();
    let error = error_of(p.path(), "big");
    assert!(error.contains("max_response_size (16KB)"), "{error}");
}

// ---- 9. Slack Retry-After and 429 without one ----------------------------

/// Two alerts match every second; Slack answers `reply` (queued `queued`
/// times, then 200). In the 12 seconds after the first post, the runner's
/// retries (10 s apart at most) would post again without a shared pause.
fn no_post_after_429(reply: SlackReply, queued: usize) {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(3, "eq"));
    let s = SlackStandIn::start();
    for _ in 0..queued {
        s.push(reply.clone());
    }
    let p = Project::new();
    p.credentials_with(&es.url, Some(s.webhook_credentials()), None);
    p.alert("one", MATCH_ALL);
    p.alert("two", MATCH_ALL);
    let d = Daemon::start(p.path(), &["--error-alert-after", "100"], &[]);
    wait_until("the first post", || !s.all_posts().is_empty());
    std::thread::sleep(Duration::from_secs(12));
    // Both alerts may post at the same instant, before the first 429 is
    // back; after it, nothing may go out.
    let posts = s.all_posts();
    let first = posts[0].at;
    assert!(posts.len() <= 2, "{} posts", posts.len());
    for p in &posts {
        assert!(
            p.at - first < Duration::from_millis(500),
            "posted again {:?} after a 429",
            p.at - first
        );
    }
    d.wait_line(T, "a delivery failing fast on the pause", |l| {
        l.get("error")
            .is_some_and(|e| e.contains("not posting until it ends"))
    });
}

#[test]
fn slack_retry_after_an_hour_pauses_every_alert_posting_there() {
    no_post_after_429(SlackReply::RateLimited(3600), 2);
}

#[test]
fn slack_429_with_empty_body_and_no_retry_after_backs_off() {
    no_post_after_429(SlackReply::RateLimitedEmpty, 50);
}

#[tokio::test]
async fn slack_retry_after_as_an_http_date_is_honoured() {
    let s = SlackStandIn::start();
    let at = (chrono::Utc::now() + chrono::Duration::hours(2))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    s.push(SlackReply::RateLimitedUntil(at));
    let hook = slack(s.webhook_credentials());
    let e = hook.send(&notification()).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    let wait = e.retry_after().expect("retry-after");
    assert!(wait > Duration::from_secs(7000), "{wait:?}");
    // Another notifier for the same webhook (a reload) keeps the pause.
    let again = slack(s.webhook_credentials());
    let e = again.send(&notification()).await.unwrap_err();
    assert!(e.retry_after().unwrap() > Duration::from_secs(7000), "{e}");
    assert_eq!(s.all_posts().len(), 1);
}

// ---- 10. redirects -------------------------------------------------------

/// A peer answering every request with `status` and `Location: location`.
fn redirector(status: u16, location: String) -> support::es::Server {
    support::es::Server::start(0, move || {
        axum::Router::new().fallback(move || {
            let location = location.clone();
            async move {
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [("location", location)],
                    "moved",
                )
            }
        })
    })
}

#[test]
fn cluster_redirects_are_errors_naming_the_location_and_never_followed() {
    let target = EsStandIn::start();
    target.set_default(Reply::total_v8(5, "eq"));
    for status in [301, 302, 307] {
        // The Location's user info must not reach the log either.
        let location = target.url.replace("http://", "http://mallory:hunter2@") + "/logs-*/_search";
        let r = redirector(status, location);
        let p = Project::new();
        credentials(
            &p,
            &json!({"elasticsearch": {"url": format!("http://127.0.0.1:{}", r.port)}}),
        );
        p.alert("moved", MATCH_ALL);
        esalert(p.path()).arg("once").assert().failure();
        let error = error_of(p.path(), "moved");
        let want = format!(
            "HTTP {status} from the cluster redirects to {}/logs-*/_search",
            target.url
        );
        assert!(error.contains(&want), "{status}: {error}");
        let all = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
        assert!(!all.contains("hunter2"), "{all}");
    }
    assert!(
        target.requests().is_empty(),
        "a redirect was followed: {:?}",
        target.requests()
    );
}

#[tokio::test]
async fn slack_redirect_is_a_permanent_error_naming_the_location() {
    let target = SlackStandIn::start();
    let r = redirector(302, target.webhook_url());
    let hook = slack(json!({"webhook_url": format!("http://127.0.0.1:{}/hooks/T/B/X", r.port)}));
    let e = hook.send(&notification()).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("HTTP 302 redirects to {}", target.webhook_url())),
        "{e}"
    );
    assert!(target.all_posts().is_empty());
}

// ---- 13. a password in the cluster URL -----------------------------------

const URL_PW: &str = "Sup3rS3cretInUrl";

#[test]
fn password_in_the_cluster_url_never_reaches_logs_stderr_or_notices() {
    let s = SlackStandIn::start();
    let p = Project::new();
    let url = format!("http://esuser:{URL_PW}@127.0.0.1:{}", support::free_port());
    credentials(
        &p,
        &json!({"elasticsearch": {"url": url, "timeout": "2s"}, "slack": s.webhook_credentials()}),
    );
    p.alert("down", MATCH_ALL);
    // `test` prints the failure on stderr.
    let out = esalert(p.path()).args(["test", "down"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("connection refused by http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("credentials_in_url"),
        "no warning: {stderr}"
    );
    assert!(!stderr.contains(URL_PW), "{stderr}");
    // The daemon: error lines and the "cluster unreachable" notice.
    let d = Daemon::start(p.path(), &["--error-alert-after", "1"], &[]);
    wait_until("the cluster notice", || {
        s.all_posts()
            .iter()
            .any(|p| p.body.to_string().contains("unreachable"))
    });
    d.wait_line(T, "an error line", |l| {
        has(l, "alert", "down") && has(l, "outcome", "error")
    });
    let posts: Vec<String> = s.all_posts().iter().map(|p| p.body.to_string()).collect();
    assert!(posts.iter().all(|b| !b.contains(URL_PW)), "{posts:?}");
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    assert!(!log.contains(URL_PW), "{log}");
    assert!(log.contains("credentials_in_url"), "{log}");
}

#[test]
fn credentials_in_the_cluster_url_are_used_for_basic_auth_with_a_warning() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq"));
    let p = Project::new();
    let url = es
        .url
        .replace("http://", &format!("http://esuser:{URL_PW}@"));
    credentials(&p, &json!({"elasticsearch": {"url": url}}));
    p.alert("auth", MATCH_ALL);
    let out = esalert(p.path()).arg("once").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("event=credentials_in_url"), "{stderr}");
    assert!(!stderr.contains(URL_PW), "{stderr}");
    let r = &es.searches()[0];
    // base64("esuser:{URL_PW}")
    assert_eq!(
        r.headers["authorization"].to_str().unwrap(),
        "Basic ZXN1c2VyOlN1cDNyUzNjcmV0SW5Vcmw="
    );
}

// ---- 14. parse errors never echo secrets ---------------------------------

#[test]
fn credentials_parse_errors_name_the_secret_field_but_never_its_value() {
    let p = Project::new();
    for (creds, field) in [
        (
            "{\"elasticsearch\": {\"url\": \"http://127.0.0.1:9200\",\n  \"password\": 918273645}}",
            "elasticsearch.password",
        ),
        (
            "{\"elasticsearch\": {\"url\": \"http://127.0.0.1:9200\"},\n \"slack\": {\"token\": 918273645.5}}",
            "slack.token",
        ),
        (
            "{\"elasticsearch\": {\"url\": \"http://127.0.0.1:9200\", \"api_key\": [918273645]}}",
            "elasticsearch.api_key",
        ),
    ] {
        let path = p.path().join("credentials.json");
        std::fs::write(&path, creds).unwrap();
        chmod(&path, 0o600);
        let out = esalert(p.path()).arg("check").output().unwrap();
        assert!(!out.status.success());
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("918273645"), "secret echoed: {all}");
        assert!(all.contains(field), "field not named: {all}");
        assert!(all.contains("credentials.json:"), "no position: {all}");
    }
}

// ---- 16. SMTP auth in clear ----------------------------------------------

#[test]
fn smtp_password_without_encryption_is_refused_unless_allowed() {
    let p = Project::new();
    let mut email = json!({"smtp_host": "127.0.0.1", "security": "none", "username": "u",
        "password": "p", "from": "esalert@example.com", "to": ["soc@example.com"]});
    credentials(
        &p,
        &json!({"elasticsearch": {"url": "http://127.0.0.1:9200"}, "email": email}),
    );
    let out = esalert(p.path()).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("credentials.json:") && stdout.contains("allow_plaintext_auth"),
        "{stdout}"
    );
    email["allow_plaintext_auth"] = json!(true);
    credentials(
        &p,
        &json!({"elasticsearch": {"url": "http://127.0.0.1:9200"}, "email": email}),
    );
    let out = esalert(p.path()).arg("check").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("smtp_plaintext_auth"),
        "no warning: {stderr}"
    );
}

// ---- 17. credentials permissions -----------------------------------------

fn check_warns(dir: &Path, as_user: Option<(u32, u32)>) -> bool {
    let mut c = esalert(dir);
    c.arg("check");
    if let Some((uid, gid)) = as_user {
        use std::os::unix::process::CommandExt;
        let mut std_cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("esalert"));
        std_cmd
            .current_dir(dir)
            .env("ESALERT_TEST_PW", "pw")
            .arg("check")
            .uid(uid)
            .gid(gid);
        let out = std_cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        return stderr.contains("insecure_credentials");
    }
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr.contains("insecure_credentials")
}

#[test]
fn credentials_permission_warning_only_when_others_or_a_foreign_group_can_read() {
    let p = Project::new();
    let path = p.credentials("http://127.0.0.1:9200");
    assert!(!check_warns(p.path(), None), "0600 warned");
    // Group-readable by our own group: the systemd install's root:esalert 0640.
    chmod(&path, 0o640);
    assert!(!check_warns(p.path(), None), "0640 with our group warned");
    chmod(&path, 0o644);
    assert!(check_warns(p.path(), None), "world-readable did not warn");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // As root, play the service user (65534) and a foreign group.
        chmod(p.path(), 0o755);
        chmod(&p.queries(), 0o755);
        let nobody = 65534;
        chmod(&path, 0o640);
        std::os::unix::fs::chown(&path, Some(0), Some(nobody)).unwrap();
        assert!(
            !check_warns(p.path(), Some((nobody, nobody))),
            "root:<service group> 0640 warned"
        );
        std::os::unix::fs::chown(&path, Some(nobody), Some(4242)).unwrap();
        assert!(
            check_warns(p.path(), Some((nobody, nobody))),
            "readable by a foreign group did not warn"
        );
    }
}

// ---- errors said once ----------------------------------------------------

#[test]
fn test_command_prints_a_refused_connection_once() {
    let p = Project::new();
    p.credentials(&format!("http://127.0.0.1:{}", support::free_port()));
    p.alert("refused", MATCH_ALL);
    let out = esalert(p.path())
        .args(["test", "refused"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("connection refused").count(),
        1,
        "said more than once: {stderr}"
    );
    assert!(stderr.contains("alert refused: search failed"), "{stderr}");
}
