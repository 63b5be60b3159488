//! Every TLS-capable client built and used in one process, with the one
//! crypto provider esalert installs. Two providers compiled in would make
//! rustls panic ("no process-level CryptoProvider") right here.

mod support;

use esalert::config::{EmailConfig, EsConfig, SlackConfig};
use esalert::notify::email::EmailNotifier;
use esalert::notify::slack::SlackNotifier;
use esalert::notify::{Notification, Notifier};
use esalert::render::Rendered;
use esalert::search::{EsClient, SearchError};
use serde_json::json;
use support::EsStandIn;

#[tokio::test]
async fn every_client_builds_and_handshakes_in_one_process() {
    esalert::install_crypto_provider();
    // A plain-HTTP server: each TLS client reaches its handshake and fails
    // cleanly, which proves the provider is in place (no panic).
    let plain = EsStandIn::start();
    let https = plain.url.replace("http://", "https://");

    let es: EsConfig = serde_json::from_value(json!({"url": https, "timeout": "2s"})).unwrap();
    let e = EsClient::new(&es)
        .unwrap()
        .search(&["a".into()], &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(e, SearchError::Tls { .. }), "{e}");

    let n = Notification::of(
        "tls",
        Rendered::from_data("s".into(), "m".into()),
        1,
        chrono::Utc::now(),
    );
    let slack: SlackConfig =
        serde_json::from_value(json!({"webhook_url": format!("{https}/hooks/x")})).unwrap();
    let e = SlackNotifier::new(&slack)
        .unwrap()
        .send(&n)
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    let bot: SlackConfig =
        serde_json::from_value(json!({"token": "xoxb-1", "channel": "#a"})).unwrap();
    SlackNotifier::new(&bot).unwrap();

    for security in ["tls", "starttls"] {
        let email: EmailConfig = serde_json::from_value(json!({"smtp_host": "127.0.0.1", "smtp_port": plain.port,
            "security": security, "from": "a@example.com", "to": ["b@example.com"], "timeout": "2s"})).unwrap();
        let e = EmailNotifier::new(&email)
            .unwrap()
            .send(&n)
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{security}: {e}");
    }
}
