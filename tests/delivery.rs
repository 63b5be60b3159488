//! Slack and email delivery against real protocol peers: esalert's Slack
//! client (slack-morphism's models over reqwest) against a local Slack stand-in, and lettre against
//! a real SMTP server (aiosmtpd).

mod support;

use std::time::{Duration, Instant};

use chrono::TimeZone;
use esalert::alert::parse_alert;
use esalert::condition::ScriptEngine;
use esalert::config::{EmailConfig, SlackConfig};
use esalert::engine;
use esalert::notify::email::EmailNotifier;
use esalert::notify::slack::{SlackNotifier, split_mrkdwn};
use esalert::notify::{Notification, Notifier};
use esalert::render::Rendered;
use serde_json::{Value, json};
use support::{SlackReply, SlackStandIn, SmtpServer};

fn time() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 21, 20, 41, 0)
        .unwrap()
}

/// Renders a real alert against a response, as the engine does.
fn notification(alert_json: &str, response: Value) -> Notification {
    let alert = parse_alert(
        "web_errors",
        std::path::Path::new("web_errors.json"),
        alert_json,
        &ScriptEngine::default(),
    )
    .unwrap();
    let ev = engine::evaluate(
        &alert,
        &ScriptEngine::default(),
        &response,
        time(),
        engine::default_window(&alert, time()),
    )
    .unwrap();
    Notification::new(
        alert.native().unwrap(),
        ev.rendered.unwrap(),
        ev.hits,
        time(),
    )
}

const ALERT: &str = r#"{"index": "logs", "body": {}, "condition": {"always": {}}, "media": ["slack", "email"],
  "subject": "Errors on {{ hits.hits.0._source.host }}",
  "message": "*Top line* from <https://kibana.example.com|Kibana>:\n{% for h in hits.hits %}- {{ h._source.line }}\n{% endfor %}"}"#;

fn evil_response() -> Value {
    json!({"hits": {"total": {"value": 2, "relation": "eq"}, "hits": [
        {"_source": {"host": "web-1", "line": "<!channel> & <http://evil.example|click me>"}},
        {"_source": {"host": "web-1", "line": "<script>alert(1)</script>"}}]}})
}

fn slack(cfg: Value) -> SlackNotifier {
    esalert::install_crypto_provider();
    let cfg: SlackConfig = serde_json::from_value(cfg).unwrap();
    SlackNotifier::new(&cfg).unwrap()
}

fn block_texts(body: &Value, kind: &str) -> Vec<String> {
    body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == kind)
        .map(|b| match kind {
            "context" => b["elements"][0]["text"].as_str().unwrap().to_owned(),
            _ => b["text"]["text"].as_str().unwrap().to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn slack_webhook_payload_layout_and_escaping() {
    let s = SlackStandIn::start();
    let n = notification(ALERT, evil_response());
    slack(s.webhook_credentials()).send(&n).await.unwrap();
    let posts = s.delivered();
    assert_eq!(posts.len(), 1);
    let p = &posts[0];
    assert_eq!(p.path, "/hooks/T000/B000/XXXX");
    assert_eq!(block_texts(&p.body, "header"), ["Errors on web-1"]);
    let section = &block_texts(&p.body, "section")[0];
    // Literal template mrkdwn survives; response values are escaped.
    assert!(
        section.starts_with("*Top line* from <https://kibana.example.com|Kibana>:"),
        "{section}"
    );
    assert!(
        section.contains("- &lt;!channel&gt; &amp; &lt;http://evil.example|click me&gt;"),
        "{section}"
    );
    assert!(!section.contains("<!channel>"), "{section}");
    assert!(section.contains("&lt;script&gt;"), "{section}");
    let ctx = &block_texts(&p.body, "context")[0];
    assert!(
        ctx.contains("web_errors")
            && ctx.contains("hits 2")
            && ctx.contains("2026-11-21T20:41:00.000Z"),
        "{ctx}"
    );
    let text = p.body["text"].as_str().unwrap();
    assert!(
        text.starts_with("Errors on web-1") && !text.contains("<!channel>"),
        "{text}"
    );
}

#[tokio::test]
async fn slack_bot_token_posts_to_channel_with_override() {
    let s = SlackStandIn::start();
    let bot = slack(s.bot_credentials("#alerts"));
    let mut n = notification(ALERT, evil_response());
    bot.send(&n).await.unwrap();
    n.slack_channel = Some("#soc".into());
    bot.send(&n).await.unwrap();
    let posts = s.delivered();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0].path, "/api/chat.postMessage");
    assert_eq!(posts[0].body["channel"], "#alerts");
    assert_eq!(posts[1].body["channel"], "#soc");
    assert_eq!(
        posts[0].headers["authorization"].to_str().unwrap(),
        "Bearer xoxb-test-token"
    );
    assert_eq!(block_texts(&posts[0].body, "header"), ["Errors on web-1"]);
}

#[tokio::test]
async fn slack_answers_rate_limit_error_and_server_error() {
    let s = SlackStandIn::start();
    let bot = slack(s.bot_credentials("#alerts"));
    let n = notification(ALERT, evil_response());

    s.push(SlackReply::RateLimited(1));
    let started = Instant::now();
    bot.send(&n).await.unwrap();
    let posts = s.all_posts();
    assert_eq!(posts.len(), 2, "one 429, then the retry");
    assert!(
        posts[1].at - posts[0].at >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));

    s.push(SlackReply::Error("channel_not_found"));
    let e = bot.send(&n).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(e.to_string().contains("channel_not_found"), "{e}");

    s.push(SlackReply::Error("invalid_auth"));
    let e = bot.send(&n).await.unwrap_err();
    assert!(
        e.to_string().contains("invalid_auth") && !e.is_transient(),
        "{e}"
    );

    s.push(SlackReply::ServerError);
    let e = bot.send(&n).await.unwrap_err();
    assert!(e.is_transient(), "{e}");

    let hook = slack(s.webhook_credentials());
    s.push(SlackReply::ServerError);
    assert!(hook.send(&n).await.unwrap_err().is_transient());
}

#[test]
fn split_respects_limits_and_code_blocks() {
    let mut text = String::from("Intro line\n```\n");
    for i in 0..400 {
        text.push_str(&format!("{i:04} {}\n", "x".repeat(60)));
    }
    text.push_str("```\nAfter the code block\n");
    text.push_str(&"y".repeat(7000));
    let chunks = split_mrkdwn(&text, 3000);
    assert!(chunks.len() > 9);
    for c in &chunks {
        assert!(c.chars().count() <= 3000, "chunk of {}", c.chars().count());
        assert_eq!(c.matches("```").count() % 2, 0, "unbalanced fence in {c:?}");
    }
    // Nothing is lost, and order is kept.
    let joined: String = chunks
        .join("\n")
        .replace("```\n", "")
        .replace("\n```", "")
        .replace('\n', "");
    let original: String = text.replace("```\n", "").replace('\n', "");
    assert_eq!(joined, original);
}

#[tokio::test]
async fn slack_long_message_is_split_into_ordered_posts() {
    let s = SlackStandIn::start();
    let mut lines = String::from("```\n");
    for i in 0..2500 {
        lines.push_str(&format!("line {i:05} {}\n", "z".repeat(40)));
    }
    lines.push_str("```\n");
    let n = Notification::of(
        "big",
        Rendered::from_data("Big one".into(), lines),
        2500,
        time(),
    );
    slack(s.webhook_credentials()).send(&n).await.unwrap();
    let posts = s.delivered();
    assert!(posts.len() >= 3, "{} posts", posts.len());
    let mut seen = Vec::new();
    for (i, p) in posts.iter().enumerate() {
        let blocks = p.body["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        let chars: usize = blocks
            .iter()
            .map(|b| b["text"]["text"].as_str().map_or(0, |t| t.chars().count()))
            .sum::<usize>()
            + p.body["text"].as_str().unwrap().chars().count();
        assert!(chars <= 40_000, "post {i} has {chars} characters");
        let header = &block_texts(&p.body, "header")[0];
        assert_eq!(header, &format!("Big one ({}/{})", i + 1, posts.len()));
        for sec in block_texts(&p.body, "section") {
            assert!(sec.chars().count() <= 3000);
            assert!(
                sec.starts_with("```") && sec.ends_with("```"),
                "code block cut: {sec:.40}"
            );
            seen.extend(
                sec.lines()
                    .filter(|l| l.starts_with("line "))
                    .map(str::to_owned),
            );
        }
    }
    let expected: Vec<String> = (0..2500)
        .map(|i| format!("line {i:05} {}", "z".repeat(40)))
        .collect();
    assert_eq!(seen, expected, "every line once, in order");
}

fn email(server: &SmtpServer, extra: Value) -> EmailNotifier {
    esalert::install_crypto_provider();
    let mut cfg = server.credentials();
    if let (Value::Object(m), Value::Object(e)) = (&mut cfg, extra) {
        m.extend(e);
    }
    let cfg: EmailConfig = serde_json::from_value(cfg).unwrap();
    EmailNotifier::new(&cfg).unwrap()
}

fn parts(data: &str) -> (String, String, mail_parser::Message<'_>) {
    let msg = mail_parser::MessageParser::default()
        .parse(data.as_bytes())
        .unwrap();
    let text = msg.body_text(0).unwrap().into_owned();
    let html = msg.body_html(0).unwrap().into_owned();
    (text, html, msg)
}

#[tokio::test]
async fn email_multipart_headers_recipients_and_escaping() {
    let smtp = SmtpServer::start();
    let mailer = email(&smtp, json!({"cc": ["lead@example.com"]}));
    let n = notification(ALERT, evil_response());
    mailer.send(&n).await.unwrap();
    mailer.send(&n).await.unwrap();
    let got = smtp.received();
    assert_eq!(got.len(), 2);
    let m = &got[0];
    assert_eq!(m.mail_from, "alerts@example.com");
    assert_eq!(m.rcpt_tos, ["soc@example.com", "lead@example.com"]);
    let (text, html, msg) = parts(&m.data);
    assert_eq!(msg.subject(), Some("Errors on web-1"));
    assert_eq!(
        msg.header_raw("X-Esalert-Alert").map(str::trim),
        Some("web_errors")
    );
    assert!(m.data.contains("multipart/alternative"), "{}", m.data);
    // Plain part: the raw values. HTML part: escaped values.
    assert!(text.contains("- <script>alert(1)</script>"), "{text}");
    assert!(html.contains("- &lt;script&gt;alert(1)&lt;"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    // Unique Message-IDs.
    let id1 = msg.message_id().unwrap().to_owned();
    let (_, _, msg2) = parts(&got[1].data);
    assert_ne!(id1, msg2.message_id().unwrap());
}

#[tokio::test]
async fn email_per_alert_recipients_override_defaults() {
    let smtp = SmtpServer::start();
    let mailer = email(&smtp, json!({"cc": ["lead@example.com"]}));
    let mut n = notification(ALERT, evil_response());
    n.email_to = vec!["oncall@example.com".into()];
    n.email_cc = vec!["boss@example.com".into()];
    mailer.send(&n).await.unwrap();
    assert_eq!(
        smtp.received()[0].rcpt_tos,
        ["oncall@example.com", "boss@example.com"]
    );
}

#[tokio::test]
async fn newline_in_a_value_cannot_inject_a_header() {
    let smtp = SmtpServer::start();
    let mailer = email(&smtp, json!({}));
    let n = notification(
        ALERT,
        json!({"hits": {"total": 1, "hits": [{"_source": {"host": "x\r\nBcc: victim@example.org\r\nX-Evil: 1", "line": "l"}}]}}),
    );
    mailer.send(&n).await.unwrap();
    let m = &smtp.received()[0];
    assert_eq!(m.rcpt_tos, ["soc@example.com"]);
    let headers = m.data.split("\r\n\r\n").next().unwrap();
    assert!(
        !headers
            .lines()
            .any(|l| l.starts_with("Bcc:") || l.starts_with("X-Evil:")),
        "{headers}"
    );
    let (_, _, msg) = parts(&m.data);
    assert_eq!(
        msg.subject(),
        Some("Errors on x Bcc: victim@example.org X-Evil: 1")
    );
}

#[tokio::test]
async fn smtp_errors_are_classified() {
    let smtp = SmtpServer::start();
    let mailer = email(&smtp, json!({}));
    let n = notification(ALERT, evil_response());
    smtp.set_mode("451");
    let e = mailer.send(&n).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    smtp.set_mode("550");
    let e = mailer.send(&n).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(e.to_string().contains("550"), "{e}");
    smtp.set_mode("slow");
    let slow = email(&smtp, json!({"timeout": "1s"}));
    let started = Instant::now();
    let e = slow.send(&n).await.unwrap_err();
    assert!(
        e.is_transient() && e.to_string().contains("did not finish"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    let port = smtp.port;
    drop(smtp);
    let down: EmailConfig =
        serde_json::from_value(json!({"smtp_host": "127.0.0.1", "smtp_port": port,
        "security": "none", "from": "a@example.com", "to": ["b@example.com"], "timeout": "2s"}))
        .unwrap();
    let e = EmailNotifier::new(&down)
        .unwrap()
        .send(&n)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
}

#[tokio::test]
async fn slack_rate_limit_pauses_every_post_not_just_the_one_that_got_it() {
    let s = SlackStandIn::start();
    let hook = std::sync::Arc::new(slack(s.webhook_credentials()));
    let n = notification(ALERT, evil_response());
    s.push(SlackReply::RateLimited(1));
    let (h1, n1) = (hook.clone(), n.clone());
    let first = tokio::spawn(async move { h1.send(&n1).await });
    // Let the first post meet the 429, then send another.
    tokio::time::sleep(Duration::from_millis(200)).await;
    hook.send(&n).await.unwrap();
    first.await.unwrap().unwrap();
    let posts = s.all_posts();
    let limited = posts
        .iter()
        .find(|p| p.body.get("__rejected").is_some())
        .expect("the 429")
        .at;
    let accepted: Vec<_> = s.delivered().iter().map(|p| p.at).collect();
    assert_eq!(accepted.len(), 2);
    for at in accepted {
        assert!(
            at >= limited + Duration::from_millis(950),
            "a post went out during Retry-After"
        );
    }
}
