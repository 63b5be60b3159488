//! The console on `--listen`, through the real daemon and real sockets:
//! every page and API answers, values are escaped, changes need the token
//! (bearer, or a session cookie with its CSRF token), read-only mode
//! refuses them, and an exposed address needs a token.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{Daemon, has};
use support::{EsStandIn, Project, Reply, SlackStandIn, esalert_in, free_port};

const T: Duration = Duration::from_secs(20);

/// A small HTTP client for one daemon.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| {
                c.split(';')
                    .next()?
                    .split_once('=')
                    .filter(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_owned())
            })
    }
}

impl Http {
    fn new(port: u16) -> Http {
        esalert::install_crypto_provider();
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        self.rt.block_on(async {
            let r = req.send().await.expect("request");
            Resp {
                status: r.status().as_u16(),
                headers: r.headers().clone(),
                body: r.text().await.unwrap_or_default(),
            }
        })
    }

    fn get(&self, path: &str) -> Resp {
        self.send(self.client.get(format!("{}{path}", self.base)))
    }

    fn get_with(&self, path: &str, cookie: &str) -> Resp {
        self.send(
            self.client
                .get(format!("{}{path}", self.base))
                .header("cookie", cookie),
        )
    }

    fn post(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        self.send(r)
    }

    /// Waits until the console answers.
    fn wait_up(&self) {
        let start = Instant::now();
        loop {
            let url = format!("{}/healthz", self.base);
            if self
                .rt
                .block_on(async { self.client.get(url).send().await })
                .is_ok()
            {
                return;
            }
            assert!(start.elapsed() < T, "the console never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `path` answers 200 with a body satisfying `pred`.
    fn wait_for(&self, path: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let r = self.get(path);
            if r.status == 200 && pred(&r.body) {
                return r.body;
            }
            assert!(
                start.elapsed() < T,
                "{path} never showed {what}: {}",
                r.body
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

const XSS: &str = "<script>alert(1)</script>";

/// A project with a firing alert (its message shows a hit's value, a
/// `<script>`), a throttled one, a quiet one, a watch, and a rejected file.
fn project(console: Option<Value>) -> (Project, EsStandIn, SlackStandIn) {
    let es = EsStandIn::start();
    es.set_default(Reply::with(
        3,
        json!({"hits": {"total": {"value": 3, "relation": "eq"}, "max_score": null,
            "hits": [{"_index": "logs", "_id": "1", "_source": {"user": XSS}}]}}),
    ));
    es.respond_with(|r| {
        r.path
            .starts_with("/quiet")
            .then(|| Reply::total_v8(0, "eq"))
    });
    let slack = SlackStandIn::start();
    let p = Project::new();
    let creds = p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    if let Some(c) = console {
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
        v["console"] = c;
        std::fs::write(&creds, v.to_string()).unwrap();
    }
    let alert = |index: &str, schedule: &str, throttle: &str| {
        json!({"index": index, "body": {}, "schedule": schedule, "throttle_period": throttle,
            "media": ["slack"], "condition": {"compare": {"hits.total": {"gte": 2}}},
            "message": "user {{ hits.hits[0]._source.user }} on {{ alert.name }}"})
        .to_string()
    };
    p.alert("fires", &alert("fires-*", "1s", "0s"));
    p.alert("throttled", &alert("throttled-*", "1s", "1h"));
    p.alert("quiet", &alert("quiet-*", "1s", "0s"));
    p.alert("hourly", &alert("hourly-*", "10m", "0s"));
    p.alert(
        "watched",
        &json!({
            "trigger": {"schedule": {"interval": "1s"}},
            "input": {"search": {"request": {"indices": "w", "body": {}}}},
            "condition": {"compare": {"ctx.payload.hits.total": {"gt": 0}}},
            "throttle_period_in_millis": 0,
            "actions": {"log": {"logging": {"text": "hit"}}}
        })
        .to_string(),
    );
    std::fs::write(
        p.queries().join("broken.json"),
        "{\"index\": \"x\",\n \"body\": {},\n \"mesage\": 1}",
    )
    .unwrap();
    (p, es, slack)
}

fn start(p: &Project, listen: &str) -> (Daemon, Http) {
    let port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
    let d = Daemon::start(p.path(), &["--listen", listen], &[]);
    let http = Http::new(port);
    http.wait_up();
    (d, http)
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

fn log_has(p: &Path, pred: impl Fn(&BTreeMap<String, String>) -> bool) -> bool {
    support::log_lines(p).iter().any(pred)
}

#[test]
fn every_page_and_api_answers_and_escapes() {
    let (p, _es, _slack) = project(None);
    let port = free_port();
    let (d, http) = start(&p, &port.to_string());
    d.wait_line(T, "fires fired", |l| {
        has(l, "alert", "fires") && has(l, "outcome", "fired")
    });
    d.wait_line(T, "throttled throttled", |l| {
        has(l, "alert", "throttled") && has(l, "outcome", "throttled")
    });

    // The alerts page: every rule, the rejected file with its position, states.
    let page = http.wait_for("/alerts", "the throttled row", |b| {
        b.contains("badge s-throttled\">throttled")
    });
    for id in [
        "alert-fires",
        "alert-throttled",
        "alert-quiet",
        "alert-watched",
        "alert-broken",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    assert!(page.contains("broken.json:3:") && page.contains("unknown field `mesage`"));
    assert!(page.contains("<tr id=\"alert-fires\" data-state=\"firing\""));
    assert!(!page.contains(XSS));
    let r = http.get("/alerts?state=throttled");
    assert!(r.body.contains("id=\"alert-throttled\"") && !r.body.contains("id=\"alert-quiet\""));
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    assert!(!r.body.contains(" onclick=") && !r.body.contains("<script>"));
    assert_eq!(http.get("/").status, 303);
    assert_eq!(http.get("/alerts?page=abc").status, 400);

    // An alert's page: the rendered notification, escaped; the chart; the definition.
    let page = http.wait_for("/alerts/fires", "a notification", |b| {
        b.contains("notification")
    });
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains(XSS));
    assert!(page.contains("<svg class=\"chart\"") && page.contains("id=\"threshold\""));
    assert!(page.contains("threshold 2"));
    assert!(page.contains("&quot;fires-*&quot;"), "definition shown");
    assert_eq!(http.get("/alerts/nope").status, 404);
    assert_eq!(http.get("/alerts/broken").status, 200);
    assert_eq!(http.get("/health").status, 200);
    assert!(
        http.get("/health")
            .body
            .contains("id=\"health-status\">ok<")
    );

    // The API behind them.
    let all = http.get("/api/alerts").json();
    assert_eq!(all["total"], 6);
    assert_eq!(all["rejected_files"].as_array().unwrap().len(), 1);
    assert!(all["counts"]["throttled"].as_u64().unwrap() >= 1);
    let paged = http.get("/api/alerts?per_page=2&page=2").json();
    assert_eq!(
        (
            paged["pages"].as_u64(),
            paged["alerts"].as_array().unwrap().len()
        ),
        (Some(3), 2)
    );
    let one = http.get("/api/alerts/throttled").json();
    assert_eq!(one["state"], "firing");
    assert!(one["throttled_until"].is_string());
    assert_eq!(one["kind"], "native");
    assert_eq!(one["threshold"], 2.0);
    assert!(one["keys"][0]["throttled_until"][""].is_string());
    let h = http.get("/api/alerts/fires/history").json();
    let runs = h["runs"].as_array().unwrap();
    assert!(
        runs.iter()
            .any(|r| r["outcome"] == "fired" && r["hits"] == 3),
        "{h}"
    );
    // The newest notification goes with its run, or stands alone until its line is written.
    let rendered = |n: &Value| {
        n["deliveries"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains(XSS))
    };
    assert!(
        runs.iter().any(|r| r["notifications"]
            .as_array()
            .is_some_and(|n| n.iter().any(rendered)))
            || h["notifications"].as_array().unwrap().iter().any(rendered),
        "{h}"
    );
    assert_eq!(http.get("/api/alerts/nope").status, 404);
    assert_eq!(http.get("/api/alerts/nope/history").status, 404);
    assert_eq!(http.get("/api/silences").json(), json!([]));
    assert_eq!(http.get("/api/health").json()["status"], "ok");
    assert_eq!(http.get("/healthz").status, 200);
    assert!(http.get("/metrics").body.contains("esalert_runs_total"));
    let css = http.get("/assets/console.css");
    assert!(
        css.status == 200
            && css.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/css")
    );
    assert_eq!(http.get("/assets/console.js").status, 200);

    // Without `console.token`, nothing can change.
    let r = http.post(
        "/api/alerts/fires/silence",
        &[("for", "1h")],
        &[("authorization", "Bearer x")],
    );
    assert_eq!(r.status, 403);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("set console.token")
    );
    assert!(http.get("/alerts/fires").body.contains("set console.token"));
    assert_eq!(http.get("/api/silences").json(), json!([]));
}

#[test]
fn changes_need_the_token_and_a_csrf_token_and_are_logged() {
    let (p, _es, _slack) = project(Some(
        json!({"token": "${CONSOLE_TOKEN}", "token_name": "ops"}),
    ));
    let port = free_port();
    let d = Daemon::start(
        p.path(),
        &["--listen", &format!("127.0.0.1:{port}")],
        &[("CONSOLE_TOKEN", "s3cret-token")],
    );
    let http = Http::new(port);
    http.wait_up();
    d.wait_line(T, "watched ran", |l| {
        has(l, "alert", "watched") && has(l, "action", "log")
    });
    let bearer = [("authorization", "Bearer s3cret-token")];

    // Scripts: the bearer token, and nothing else.
    let none = http.post("/api/alerts/fires/silence", &[("for", "1h")], &[]);
    assert_eq!(none.status, 401, "{}", none.body);
    let wrong = http.post(
        "/api/alerts/fires/silence",
        &[("for", "1h")],
        &[("authorization", "Bearer nope")],
    );
    assert_eq!(wrong.status, 401);
    let ok = http.post(
        "/api/alerts/fires/silence",
        &[("for", "1h"), ("reason", "deploy")],
        &bearer,
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let id = ok.json()["silence"].as_str().unwrap().to_owned();
    let list = esalert_in(p.path(), "pw")
        .args(["silence", "--list"])
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(
        list.contains(&id) && list.contains("fires") && list.contains("deploy"),
        "{list}"
    );
    assert_eq!(http.get("/api/silences").json()[0]["id"], id.as_str());
    let line = d.wait_line(T, "the silence logged", |l| {
        has(l, "event", "console_action") && has(l, "action", "silence")
    });
    assert_eq!(
        (line["who"].as_str(), line["alert"].as_str()),
        ("ops", "fires")
    );
    assert!(log_has(p.path(), |l| has(l, "event", "console_refused")));
    let un = http.post("/api/alerts/fires/unsilence", &[("id", &id)], &bearer);
    assert_eq!(un.status, 200, "{}", un.body);
    assert_eq!(http.get("/api/silences").json(), json!([]));
    assert_eq!(
        http.post("/api/alerts/fires/unsilence", &[("id", &id)], &bearer)
            .status,
        404
    );
    assert_eq!(
        http.post("/api/alerts/fires/silence", &[("for", "400d")], &bearer)
            .status,
        400
    );
    assert_eq!(
        http.post("/api/alerts/nope/silence", &[("for", "1h")], &bearer)
            .status,
        404
    );
    assert_eq!(http.get("/api/alerts/fires/silence").status, 405);

    // Ack a watch action, run now, test over the last hours.
    let ack = http.post("/api/alerts/watched/ack", &[("action", "log")], &bearer);
    assert_eq!(ack.status, 200, "{}", ack.body);
    assert_eq!(ack.json()["acked"], json!(["log"]));
    assert_eq!(
        http.get("/api/alerts/watched").json()["actions"]["log"],
        "acked"
    );
    assert_eq!(http.post("/api/alerts/fires/ack", &[], &bearer).status, 400);
    let run = http.post("/api/alerts/hourly/run", &[], &bearer);
    assert_eq!(run.status, 200, "{}", run.body);
    assert_eq!(run.json()["outcome"], "fired");
    let test = http.post("/api/alerts/hourly/test", &[("hours", "2")], &bearer);
    assert_eq!(test.status, 200, "{}", test.body);
    let t = test.json();
    assert_eq!(t["windows_searched"], 12, "{t}");
    assert_eq!(t["windows_matched"], 12);
    assert_eq!(
        http.post("/api/alerts/hourly/test", &[("hours", "0")], &bearer)
            .status,
        400
    );

    // Browsers: a login form bound to a cookie, then a session cookie and CSRF tokens.
    let form = http.get("/login");
    let pre = form.cookie("esalert_login").expect("login cookie");
    let csrf = csrf_of(&form.body);
    let cookie = format!("esalert_login={pre}");
    let bad = http.post(
        "/login",
        &[("token", "nope"), ("csrf", &csrf)],
        &[("cookie", &cookie)],
    );
    assert_eq!(bad.status, 401);
    assert!(bad.body.contains("Wrong token"));
    let forged = http.post(
        "/login",
        &[("token", "s3cret-token"), ("csrf", "x")],
        &[("cookie", &cookie)],
    );
    assert_eq!(forged.status, 403);
    let good = http.post(
        "/login",
        &[("token", "s3cret-token"), ("csrf", &csrf)],
        &[("cookie", &cookie)],
    );
    assert_eq!(good.status, 303);
    let set = good.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let session = format!(
        "esalert_session={}",
        good.cookie("esalert_session").unwrap()
    );
    let page = http.get_with("/alerts/fires", &session);
    assert!(page.body.contains("id=\"silence-1h\""));
    let form_csrf = csrf_of(&page.body);
    let no_csrf = http.post(
        "/alerts/fires/silence",
        &[("for", "1h")],
        &[("cookie", &session)],
    );
    assert_eq!(no_csrf.status, 403);
    assert!(no_csrf.body.contains("CSRF"));
    let bad_csrf = http.post(
        "/alerts/fires/silence",
        &[("for", "1h"), ("csrf", "0000")],
        &[("cookie", &session)],
    );
    assert_eq!(bad_csrf.status, 403);
    let done = http.post(
        "/alerts/fires/silence",
        &[("for", "15m"), ("csrf", &form_csrf)],
        &[("cookie", &session)],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("is silenced until"));
    assert_eq!(
        http.get("/api/silences").json().as_array().unwrap().len(),
        1
    );
}

#[test]
fn readonly_refuses_changes_and_an_exposed_address_needs_a_token() {
    let (p, _es, _slack) = project(Some(json!({"readonly": true})));
    let port = free_port();
    // Read-only may listen anywhere.
    let (_d, http) = start(&p, &format!("0.0.0.0:{port}"));
    let r = http.post(
        "/api/alerts/fires/silence",
        &[("for", "1h")],
        &[("authorization", "Bearer x")],
    );
    assert_eq!(r.status, 403);
    assert!(r.json()["error"].as_str().unwrap().contains("read-only"));
    let page = http.get("/alerts/fires");
    assert!(page.body.contains("read-only") && !page.body.contains("id=\"silence-1h\""));
    assert!(http.get("/login").body.contains("read-only"));

    // Without a token or readonly, another address is refused at start.
    let q = Project::new();
    q.credentials("http://127.0.0.1:9");
    let out = esalert_in(q.path(), "pw")
        .args(["run", "--listen", &format!("0.0.0.0:{}", free_port())])
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("console.token"), "{err}");
}

/// With an `elasticsearch` history destination, an alert's history also
/// lists what the history index holds for it (escaped, like everything).
#[test]
fn the_history_index_is_read_when_there_is_one() {
    let (p, es, _slack) = project(None);
    es.respond_with(|r| {
        if r.path.starts_with("/quiet") {
            return Some(Reply::total_v8(0, "eq"));
        }
        let wanted =
            r.path.starts_with("/esalert-history-*/_search") && r.raw.contains("\"fires\"");
        wanted.then(|| {
            Reply::with(
                1,
                json!({"hits": {"total": {"value": 1, "relation": "eq"}, "max_score": null,
                    "hits": [{"_index": "esalert-history-2026.11.30", "_id": "x", "_source": {
                        "@timestamp": "2026-11-30T05:00:00.000Z", "alert": "fires", "key": "",
                        "outcome": "fired", "hits": 9, "subject": "indexed <script>x</script>",
                        "message": "from the index"}}]}}),
            )
        })
    });
    let creds = p.path().join("credentials.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    v["outputs"] = json!({"hist": {"type": "elasticsearch"}});
    std::fs::write(&creds, v.to_string()).unwrap();
    let port = free_port();
    let (_d, http) = start(&p, &port.to_string());
    let h = http.get("/api/alerts/fires/history").json();
    assert_eq!(
        h["indexed"][0]["subject"], "indexed <script>x</script>",
        "{h}"
    );
    assert_eq!(h["indexed"][0]["hits"], 9, "{h}");
    let page = http.get("/alerts/fires").body;
    assert!(page.contains("<h3>History index</h3>"), "{page}");
    assert!(
        page.contains("indexed &lt;script&gt;x&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>x</script>"));
}
