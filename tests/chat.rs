//! The webhook, Teams, Telegram and Discord destinations through the real
//! binary, against stand-ins that check requests the way each provider
//! does: what a match sends, long messages split into valid posts, values
//! that look like markup shown as text, a provider's 400 logged and not
//! retried, a 429 waited out, and secrets kept out of alerts.log.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::discord::Discord;
use support::peer::{Peer, Request, Told};
use support::telegram::Telegram;
use support::{EsStandIn, Project, Reply};
use support::{discord, teams, telegram, webhook_peer};

const TG_TOKEN: &str = support::telegram::TOKEN;

/// A project searching a stand-in that finds 3 hits, with `outputs`.
fn project(outputs: Value) -> (Project, EsStandIn) {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(3, "eq"));
    let p = Project::new();
    std::fs::write(
        p.path().join("credentials.json"),
        json!({"elasticsearch": {"url": es.url}, "outputs": outputs}).to_string(),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let perms = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(p.path().join("credentials.json"), perms).unwrap();
    }
    (p, es)
}

/// `esalert once` with the secrets in the environment; its stdout+stderr.
fn once(p: &Project) -> String {
    let out = support::esalert_in(p.path(), "pw")
        .env("TG_TOKEN", TG_TOKEN)
        .env("HOOK_TOKEN", "s3cr3t-bearer")
        .arg("once")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn alert(p: &Project, media: &str, message: &str, extra: Value) {
    let mut a = json!({"index": "logs", "body": {}, "media": [media],
        "subject": "Intrusion <b>&amp; @everyone", "message": message});
    if let (Value::Object(m), Value::Object(e)) = (&mut a, extra) {
        m.extend(e);
    }
    p.alert("intrusion", &a.to_string());
}

fn log(p: &Project) -> String {
    std::fs::read_to_string(p.path().join("alerts.log")).unwrap_or_default()
}

/// A message of `lines` lines that look like markup.
fn long_message(lines: usize) -> String {
    format!(
        "{{% for i in range({lines}) %}}line {{{{ i }}}}: <i>x</i> & @everyone **bold**\n{{% endfor %}}"
    )
}

/// The text of every TextBlock and fact of a Teams post.
fn card_texts(post: &Request) -> Vec<String> {
    support::teams::card(&post.body)["body"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| match e["type"].as_str() {
            Some("FactSet") => e["facts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    format!(
                        "{}={}",
                        f["title"].as_str().unwrap(),
                        f["value"].as_str().unwrap()
                    )
                })
                .collect(),
            _ => vec![e["text"].as_str().unwrap().to_owned()],
        })
        .collect()
}

fn assert_no_secret(p: &Project, out: &str, secrets: &[&str]) {
    let log = log(p);
    for s in secrets {
        assert!(!log.contains(s), "{s} in alerts.log:\n{log}");
        assert!(!out.contains(s), "{s} in the output:\n{out}");
    }
}

/// The lines of alerts.log that name `text`.
fn logged(p: &Project, text: &str) -> bool {
    log(p).lines().any(|l| l.contains(text))
}

// ---- webhook ----

#[test]
fn webhook_posts_the_documented_json_document_with_bearer_auth() {
    let hook = webhook_peer::start("POST", Some("Bearer s3cr3t-bearer".into()));
    let (p, _es) = project(
        json!({"hook": {"type": "webhook", "url": format!("{}/hook", hook.url),
        "auth": {"bearer": "${HOOK_TOKEN}"}, "headers": {"X-Source": "esalert"}}}),
    );
    alert(&p, "hook", "{{ hits.total.value }} hits", json!({}));
    let out = once(&p);
    let posts = hook.delivered();
    assert_eq!(posts.len(), 1, "{out}\n{:#?}", hook.requests());
    let b = &posts[0].body;
    assert_eq!(posts[0].header("x-source"), "esalert");
    assert_eq!(posts[0].header("content-type"), "application/json");
    assert_eq!(b["alert"], "intrusion");
    assert_eq!(b["key"], "");
    assert_eq!(b["subject"], "Intrusion <b>&amp; @everyone");
    assert_eq!(b["message"], "3 hits");
    assert_eq!(b["hits"], 3);
    assert_eq!(b["resolved"], false);
    assert!(
        b["incident_key"]
            .as_str()
            .unwrap()
            .starts_with("esalert-intrusion-")
    );
    assert!(b["time"].as_str().unwrap().ends_with('Z'));
    assert!(b.get("window").is_some());
    assert_no_secret(&p, &out, &["s3cr3t-bearer"]);
}

#[test]
fn webhook_renders_a_custom_body_template_with_json_values() {
    let hook = webhook_peer::start("PUT", Some("Basic dXNlcjpwYXNz".into()));
    let (p, _es) = project(
        json!({"hook": {"type": "webhook", "url": format!("{}/hook", hook.url),
        "method": "PUT", "auth": {"basic": {"username": "user", "password": "pass"}},
        "body": "{\"text\": {{ subject }}, \"count\": {{ hits }}, \"about\": {{ alert }}, \"msg\": {{ message }}}"}}),
    );
    alert(
        &p,
        "hook",
        "said \"{{ hits.total.value }}\"\nand }{",
        json!({}),
    );
    let out = once(&p);
    let posts = hook.delivered();
    assert_eq!(posts.len(), 1, "{out}");
    assert_eq!(
        posts[0].body,
        json!({"text": "Intrusion <b>&amp; @everyone", "count": 3, "about": "intrusion", "msg": "said \"3\"\nand }{"})
    );
}

#[test]
fn webhook_400_is_permanent_with_the_answer_and_429_is_retried() {
    let setup = || {
        let hook = webhook_peer::start("POST", None);
        let (p, es) =
            project(json!({"hook": {"type": "webhook", "url": format!("{}/hook", hook.url)}}));
        alert(&p, "hook", "m", json!({}));
        (hook, p, es)
    };
    let (hook, p, _es) = setup();
    hook.tell(Told::Reject("field `team` is required"));
    once(&p);
    assert_eq!(hook.requests().len(), 1, "a 400 is not retried");
    assert!(logged(&p, "field `team` is required"), "{}", log(&p));

    let (hook, p, _es) = setup();
    hook.tell(Told::RateLimited(1));
    let started = Instant::now();
    once(&p);
    let r = hook.requests();
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].status, r[1].status), (429, 200));
    assert!(
        r[1].at - r[0].at >= Duration::from_millis(950),
        "Retry-After honoured"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
}

// ---- Teams ----

#[test]
fn teams_posts_an_adaptive_card_with_title_facts_and_message() {
    let teams = teams::start();
    let (p, _es) = project(json!({"chat": {"type": "teams", "webhook_url": teams.teams_url()}}));
    alert(
        &p,
        "chat",
        "{{ hits.total.value }} failed logins",
        json!({}),
    );
    let out = once(&p);
    let posts = teams.delivered();
    assert_eq!(posts.len(), 1, "{out}\n{:#?}", teams.requests());
    let card = support::teams::card(&posts[0].body);
    assert_eq!(card["version"], "1.4");
    assert_eq!(card["body"][0]["weight"], "bolder");
    let t = card_texts(&posts[0]);
    assert_eq!(t[0], "Intrusion <b>&amp; @everyone");
    assert!(
        t.contains(&"Alert=intrusion".to_owned()) && t.contains(&"Hits=3".to_owned()),
        "{t:?}"
    );
    assert_eq!(t.last().unwrap(), "3 failed logins");
    assert_no_secret(&p, &out, &["SECRETsig123"]);
}

#[test]
fn teams_splits_a_message_over_28_kb_into_valid_cards() {
    let teams = teams::start();
    let (p, _es) = project(json!({"chat": {"type": "teams", "webhook_url": teams.teams_url()}}));
    alert(&p, "chat", &long_message(1200), json!({}));
    let out = once(&p);
    let posts = teams.delivered();
    assert!(
        posts.len() >= 2,
        "{out}\n{:#?}",
        teams
            .requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        posts.len(),
        teams.requests().len(),
        "every card was accepted"
    );
    let mut text = String::new();
    for (i, post) in posts.iter().enumerate() {
        assert!(post.text.len() <= support::teams::MAX_PAYLOAD);
        let t = card_texts(post);
        assert!(
            t[0].ends_with(&format!("({}/{})", i + 1, posts.len())),
            "{}",
            t[0]
        );
        text.push_str(t.last().unwrap());
    }
    for i in [0, 599, 1199] {
        assert!(
            text.contains(&format!("line {i}: <i>x</i> & @everyone **bold**\n")),
            "line {i}"
        );
    }
}

#[test]
fn teams_marks_a_resolved_notice() {
    let teams = teams::start();
    let (p, es) = project(json!({"chat": {"type": "teams", "webhook_url": teams.teams_url()}}));
    alert(
        &p,
        "chat",
        "m",
        json!({"notify_resolved": true, "resolve_after": "0s"}),
    );
    once(&p);
    es.set_default(Reply::total_v8(0, "eq"));
    once(&p);
    let posts = teams.delivered();
    assert_eq!(posts.len(), 2, "{:#?}", teams.requests());
    let head = &support::teams::card(&posts[1].body)["body"][0];
    assert!(
        head["text"].as_str().unwrap().starts_with("✅ Resolved: "),
        "{head}"
    );
    assert_eq!(head["color"], "good");
    assert!(
        support::teams::card(&posts[0].body)["body"][0]
            .get("color")
            .is_none()
    );
}

#[test]
fn teams_400_is_permanent_with_the_workflows_error_and_429_is_retried() {
    let setup = || {
        let teams = teams::start();
        let (p, es) = project(json!({"chat": {"type": "teams", "webhook_url": teams.teams_url()}}));
        alert(&p, "chat", "m", json!({}));
        (teams, p, es)
    };
    let (teams, p, _es) = setup();
    teams.tell(Told::Reject(
        "The input body for trigger 'manual' of type 'Request' did not match",
    ));
    let out = once(&p);
    assert_eq!(teams.requests().len(), 1);
    assert!(
        logged(&p, "TriggerInputSchemaMismatch") && logged(&p, "did not match"),
        "{}",
        log(&p)
    );
    assert_no_secret(&p, &out, &["SECRETsig123"]);

    let (teams, p, _es) = setup();
    teams.tell(Told::RateLimited(1));
    let out = once(&p);
    let r = teams.requests();
    assert_eq!(r.len(), 2, "{out}");
    assert_eq!((r[0].status, r[1].status), (429, 202));
    assert!(
        r[1].at - r[0].at >= Duration::from_millis(950),
        "Retry-After honoured"
    );
}

// ---- Telegram ----

fn telegram_outputs(tg: &Peer<Telegram>) -> Value {
    json!({"tg": {"type": "telegram", "bot_token": "${TG_TOKEN}", "chat_id": -100123, "api_url": tg.url, "timeout": "2s"}})
}

#[test]
fn telegram_sends_html_with_the_subject_bold_and_values_escaped() {
    let tg = telegram::start();
    let (p, _es) = project(telegram_outputs(&tg));
    alert(
        &p,
        "tg",
        "{{ hits.total.value }} hits <script> & </b>",
        json!({}),
    );
    let out = once(&p);
    let posts = tg.delivered();
    assert_eq!(posts.len(), 1, "{out}\n{:#?}", tg.requests());
    assert_eq!(posts[0].path, format!("/bot{TG_TOKEN}/sendMessage"));
    let b = &posts[0].body;
    assert_eq!(b["chat_id"], -100123);
    assert_eq!(b["parse_mode"], "HTML");
    assert_eq!(
        b["text"],
        "<b>Intrusion &lt;b&gt;&amp;amp; @everyone</b>\n3 hits &lt;script&gt; &amp; &lt;/b&gt;"
    );
    assert_eq!(
        support::telegram::parse_html(b["text"].as_str().unwrap()).unwrap(),
        "Intrusion <b>&amp; @everyone\n3 hits <script> & </b>"
    );
    assert_no_secret(&p, &out, &[TG_TOKEN]);
}

#[test]
fn telegram_splits_at_4096_characters_outside_entities_and_an_alert_picks_its_chat() {
    let tg = telegram::start();
    let (p, _es) = project(telegram_outputs(&tg));
    alert(
        &p,
        "tg",
        &long_message(300),
        json!({"outputs": {"tg": {"chat_id": "@soc_alerts"}}}),
    );
    let out = once(&p);
    let posts = tg.delivered();
    assert!(
        posts.len() >= 3,
        "{out}\n{:#?}",
        tg.requests().iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(posts.len(), tg.requests().len(), "every part was valid");
    let mut shown = String::new();
    for (i, post) in posts.iter().enumerate() {
        assert_eq!(post.body["chat_id"], "@soc_alerts");
        let text = post.body["text"].as_str().unwrap();
        assert!(text.encode_utf16().count() <= 4096, "the text as sent fits");
        let head = format!(
            "<b>Intrusion &lt;b&gt;&amp;amp; @everyone ({}/{})</b>\n",
            i + 1,
            posts.len()
        );
        assert!(text.starts_with(&head), "{text:.100}");
        shown.push_str(&support::telegram::parse_html(&text[head.len()..]).unwrap());
    }
    let expected: String = (0..300)
        .map(|i| format!("line {i}: <i>x</i> & @everyone **bold**\n"))
        .collect();
    assert_eq!(shown.trim_end(), expected.trim_end());
}

#[test]
fn telegram_400_is_permanent_with_its_description_and_429_waits_retry_after() {
    let setup = || {
        let tg = telegram::start();
        let (p, es) = project(telegram_outputs(&tg));
        alert(&p, "tg", "m", json!({}));
        (tg, p, es)
    };
    let (tg, p, _es) = setup();
    tg.tell(Told::Reject("Bad Request: chat not found"));
    let out = once(&p);
    assert_eq!(tg.requests().len(), 1, "not retried");
    assert!(logged(&p, "Bad Request: chat not found"), "{}", log(&p));
    assert_no_secret(&p, &out, &[TG_TOKEN]);

    let (tg, p, _es) = setup();
    tg.tell(Told::RateLimited(1));
    let out = once(&p);
    let r = tg.requests();
    assert_eq!(r.len(), 2, "{out}");
    assert_eq!((r[0].status, r[1].status), (429, 200));
    assert!(
        r[1].at - r[0].at >= Duration::from_millis(950),
        "parameters.retry_after honoured"
    );
    assert_no_secret(&p, &out, &[TG_TOKEN]);
}

// ---- Discord ----

fn discord_outputs(d: &Peer<Discord>) -> Value {
    json!({"dc": {"type": "discord", "webhook_url": d.discord_url(), "username": "esalert"}})
}

#[test]
fn discord_posts_content_that_never_pings() {
    let d = discord::start();
    let (p, _es) = project(discord_outputs(&d));
    alert(
        &p,
        "dc",
        "{{ hits.total.value }} hits from @everyone <@123>",
        json!({}),
    );
    let out = once(&p);
    let posts = d.delivered();
    assert_eq!(posts.len(), 1, "{out}\n{:#?}", d.requests());
    let b = &posts[0].body;
    assert_eq!(b["allowed_mentions"], json!({"parse": []}));
    assert_eq!(b["username"], "esalert");
    assert_eq!(
        b["content"],
        "**Intrusion <b>&amp; @everyone**\n3 hits from @everyone <@123>"
    );
    assert_no_secret(&p, &out, &["SECRETwebhookTOKEN"]);
}

#[test]
fn discord_splits_content_at_2000_characters() {
    let d = discord::start();
    let (p, _es) = project(discord_outputs(&d));
    alert(&p, "dc", &long_message(150), json!({}));
    let out = once(&p);
    let posts = d.delivered();
    assert!(posts.len() >= 3, "{out}");
    assert_eq!(posts.len(), d.requests().len(), "every part was valid");
    let mut all = String::new();
    for (i, post) in posts.iter().enumerate() {
        let c = post.body["content"].as_str().unwrap();
        assert!(c.chars().count() <= 2000);
        let head = format!(
            "**Intrusion <b>&amp; @everyone ({}/{})**\n",
            i + 1,
            posts.len()
        );
        assert!(c.starts_with(&head), "{c:.80}");
        assert_eq!(post.body["allowed_mentions"], json!({"parse": []}));
        all.push_str(&c[head.len()..]);
    }
    assert_eq!(all.lines().count(), 150);
}

#[test]
fn discord_400_is_permanent_and_429_waits_the_bodys_retry_after() {
    let setup = || {
        let d = discord::start();
        let (p, es) = project(discord_outputs(&d));
        alert(&p, "dc", "m", json!({}));
        (d, p, es)
    };
    let (d, p, _es) = setup();
    d.tell(Told::Reject(
        r#"{"message": "Unknown Webhook", "code": 10015}"#,
    ));
    let out = once(&p);
    assert_eq!(d.requests().len(), 1);
    assert!(logged(&p, "Unknown Webhook"), "{}", log(&p));
    assert_no_secret(&p, &out, &["SECRETwebhookTOKEN"]);

    let (d, p, _es) = setup();
    d.tell(Told::RateLimited(1));
    let out = once(&p);
    let r = d.requests();
    assert_eq!(r.len(), 2, "{out}");
    assert_eq!((r[0].status, r[1].status), (429, 204));
    assert!(r[1].at - r[0].at >= Duration::from_millis(950));
    assert_no_secret(&p, &out, &["SECRETwebhookTOKEN"]);
}

// ---- every type ----

#[test]
fn failures_keep_secrets_out_of_alerts_log() {
    let (tg, d, teams) = (telegram::start(), discord::start(), teams::start());
    let mut outputs = telegram_outputs(&tg);
    outputs["dc"] = discord_outputs(&d)["dc"].clone();
    outputs["dc"]["timeout"] = json!("1s");
    outputs["chat"] = json!({"type": "teams", "webhook_url": teams.teams_url()});
    let (p, _es) = project(outputs);
    p.alert(
        "intrusion",
        &json!({"index": "logs", "body": {}, "media": ["tg", "dc", "chat"], "message": "m"})
            .to_string(),
    );
    for _ in 0..3 {
        tg.tell(Told::Unauthorized);
        d.tell(Told::Hang);
        teams.tell(Told::ServerError);
    }
    let out = once(&p);
    assert_eq!(tg.requests().len(), 1, "401 is permanent");
    assert_eq!(d.requests().len(), 3, "a hang is retried");
    assert_eq!(teams.requests().len(), 3, "500 is retried");
    assert!(logged(&p, "Unauthorized"), "{}", log(&p));
    assert_no_secret(
        &p,
        &out,
        &[TG_TOKEN, "SECRETwebhookTOKEN", "SECRETsig123", "sig="],
    );
}

#[test]
fn a_429_in_the_middle_of_a_split_message_resends_only_the_rest() {
    let d = discord::start();
    let (p, _es) = project(discord_outputs(&d));
    alert(&p, "dc", &long_message(150), json!({}));
    d.tell(Told::Accept);
    d.tell(Told::RateLimited(1));
    let out = once(&p);
    let statuses: Vec<u16> = d.requests().iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], [204, 429, 204], "{out}");
    let contents: Vec<String> = d
        .delivered()
        .iter()
        .map(|r| r.body["content"].as_str().unwrap().to_owned())
        .collect();
    let mut unique = contents.clone();
    unique.dedup();
    assert_eq!(unique, contents, "no part was posted twice");
    assert!(contents[0].contains("(1/") && contents[1].contains("(2/"));
}

/// The destinations of a credentials file, built as esalert builds them.
fn destinations(outputs: Value) -> Vec<esalert::notify::Destination> {
    esalert::install_crypto_provider();
    let text =
        json!({"elasticsearch": {"url": "http://127.0.0.1:1"}, "outputs": outputs}).to_string();
    let creds = esalert::config::Credentials::parse(
        std::path::Path::new("credentials.json"),
        &text,
        &|_| None,
    )
    .unwrap();
    esalert::sinks::destinations::build_all(&creds).unwrap()
}

#[tokio::test]
async fn healthchecks_ask_telegram_and_discord_without_posting() {
    let (tg, d) = (telegram::start(), discord::start());
    let mut outputs = telegram_outputs(&tg);
    outputs["tg"]["bot_token"] = json!(TG_TOKEN);
    outputs["dc"] = discord_outputs(&d)["dc"].clone();
    outputs["bad-tg"] = outputs["tg"].clone();
    outputs["bad-tg"]["bot_token"] = json!("123456:wrong");
    outputs["bad-dc"] =
        json!({"type": "discord", "webhook_url": format!("{}/api/webhooks/1100/wrong", d.url)});
    outputs["hook"] = json!({"type": "webhook", "url": "http://127.0.0.1:1/never"});
    for (name, _, sink) in destinations(outputs) {
        let r = sink.healthcheck().await;
        match name.as_str() {
            "tg" | "dc" | "hook" => assert!(r.is_ok(), "{name}: {r:?}"),
            _ => {
                let e = r.unwrap_err();
                assert!(!e.is_transient(), "{e}");
                assert!(
                    e.to_string().contains("Unauthorized")
                        || e.to_string().contains("Invalid Webhook Token"),
                    "{e}"
                );
                assert!(!e.to_string().contains("wrong"), "{e}");
            }
        }
    }
    let mut tg_paths: Vec<String> = tg.requests().iter().map(|r| r.path.clone()).collect();
    tg_paths.sort();
    assert_eq!(
        tg_paths,
        [
            "/bot123456:AAHsecretTOKENxyz/getMe",
            "/bot123456:wrong/getMe"
        ]
    );
    assert!(d.requests().iter().all(|r| r.method == "GET"));
    assert_eq!(d.requests().len(), 2);
}
