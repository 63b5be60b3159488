//! Email over SMTP with lettre's async tokio transport and rustls.
//!
//! Each message is multipart/alternative (plain text and HTML), carries a
//! unique `Message-ID` and an `X-Esalert-Alert` header. lettre's own timeout
//! only covers connecting, so every send is wrapped in an overall timeout.

use std::time::Duration;

use futures::future::BoxFuture;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials as SmtpCredentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::{Notification, Notifier, NotifyError, SetupError};
use crate::alert::Medium;
use crate::config::{EmailConfig, Security};

/// The `X-Esalert-Alert: <name>` header, for mail filters.
#[derive(Debug, Clone)]
struct XEsalertAlert(String);

impl Header for XEsalertAlert {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Esalert-Alert")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(XEsalertAlert(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// Delivers by email.
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
    reply_to: Option<Mailbox>,
    timeout: Duration,
}

/// Reads `user` and `password` from an auth file (YAML or JSON).
fn auth_file(path: &std::path::Path) -> Result<(String, String), String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("smtp auth file {shown}: {e}"))?;
    let doc = crate::frontends::elastalert::yaml::parse(&text)
        .map_err(|e| format!("smtp auth file {shown}: {e}"))?;
    let field = |k: &str| {
        doc.value
            .get(k)
            .and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| format!("smtp auth file {shown} has no `{k}`"))
    };
    Ok((field("user")?, field("password")?))
}

impl std::fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("from", &self.from.to_string())
            .finish()
    }
}

fn mailboxes(list: &[String], what: &str) -> Result<Vec<Mailbox>, String> {
    list.iter()
        .map(|a| {
            a.parse::<Mailbox>()
                .map_err(|e| format!("{what} address {a:?} is not valid: {e}"))
        })
        .collect()
}

impl EmailNotifier {
    /// Builds the SMTP transport; connects lazily.
    pub fn new(cfg: &EmailConfig) -> Result<EmailNotifier, SetupError> {
        let err = |m: String| SetupError::Email(m);
        let builder = match cfg.security {
            Security::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.smtp_host).port(25)
            }
            Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.smtp_host)
                .map_err(|e| err(format!("TLS setup for {}: {e}", cfg.smtp_host)))?,
            Security::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.smtp_host)
                    .map_err(|e| err(format!("STARTTLS setup for {}: {e}", cfg.smtp_host)))?
            }
        };
        let mut builder = builder.timeout(Some(cfg.timeout.value.min(Duration::from_secs(30))));
        if let Some(port) = cfg.smtp_port {
            builder = builder.port(port);
        }
        if let Some(path) = &cfg.auth_file {
            let (user, pass) = auth_file(path).map_err(err)?;
            builder = builder.credentials(SmtpCredentials::new(user, pass));
        } else if let Some(user) = &cfg.username {
            if cfg.security == Security::None {
                // Credentials::parse refuses this unless allow_plaintext_auth.
                tracing::warn!(
                    event = "smtp_plaintext_auth",
                    host = cfg.smtp_host.as_str(),
                    "email security is none with a username: the SMTP password travels unencrypted (allow_plaintext_auth: true)"
                );
            }
            let pass = cfg
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned())
                .unwrap_or_default();
            builder = builder.credentials(SmtpCredentials::new(user.clone(), pass));
        }
        let from = cfg
            .from
            .parse::<Mailbox>()
            .map_err(|e| err(format!("from address {:?} is not valid: {e}", cfg.from)))?;
        Ok(EmailNotifier {
            transport: builder.build(),
            from,
            to: mailboxes(&cfg.to, "to").map_err(err)?,
            cc: mailboxes(&cfg.cc, "cc").map_err(err)?,
            bcc: mailboxes(&cfg.bcc, "bcc").map_err(err)?,
            reply_to: match &cfg.reply_to {
                Some(r) => mailboxes(std::slice::from_ref(r), "reply_to")
                    .map_err(err)?
                    .into_iter()
                    .next(),
                None => None,
            },
            timeout: cfg.timeout.value,
        })
    }

    /// Builds the message for a notification.
    pub fn message(&self, n: &Notification) -> Result<Message, NotifyError> {
        let perm = |m: String| NotifyError::permanent(Medium::Email, m);
        let (alert_to, alert_cc) = (n.to(), n.cc());
        let (to, cc) = if alert_to.is_empty() {
            (self.to.clone(), self.cc.clone())
        } else {
            (
                mailboxes(&alert_to, "to").map_err(perm)?,
                mailboxes(&alert_cc, "cc").map_err(perm)?,
            )
        };
        let cc = if alert_to.is_empty() || !alert_cc.is_empty() {
            cc
        } else {
            self.cc.clone()
        };
        if to.is_empty() {
            return Err(perm(
                "no recipients: set email.to in credentials.json or in the alert".into(),
            ));
        }
        let mut b = Message::builder()
            .from(self.from.clone())
            // The subject is one line already; lettre encodes anything else.
            .subject(crate::render::one_line(&n.rendered.subject))
            .message_id(None)
            .header(XEsalertAlert(n.alert.clone()));
        for m in to {
            b = b.to(m);
        }
        for m in cc {
            b = b.cc(m);
        }
        let bcc = match n.setting_list("bcc") {
            Some(list) => mailboxes(&list, "bcc").map_err(perm)?,
            None => self.bcc.clone(),
        };
        for m in bcc {
            b = b.bcc(m);
        }
        let reply_to = match n.setting("reply_to") {
            Some(r) => mailboxes(&[r.to_owned()], "reply_to")
                .map_err(perm)?
                .into_iter()
                .next(),
            None => self.reply_to.clone(),
        };
        if let Some(r) = reply_to {
            b = b.reply_to(r);
        }
        if n.setting("format") == Some("html") {
            // The text is HTML already (ElastAlert's `email_format: html`).
            return b
                .header(lettre::message::header::ContentType::TEXT_HTML)
                .body(n.rendered.text.clone())
                .map_err(|e| perm(format!("cannot build message: {e}")));
        }
        let html = format!(
            "<!DOCTYPE html><html><body><div style=\"white-space: pre-wrap; font-family: sans-serif\">{}</div>\
             <p style=\"color: #888; font-size: small\">esalert · alert {} · hits {} · {}</p></body></html>",
            n.rendered.html,
            n.alert,
            n.hits,
            crate::render::fmt_time(&n.time)
        );
        b.multipart(MultiPart::alternative_plain_html(
            n.rendered.text.clone(),
            html,
        ))
        .map_err(|e| perm(format!("cannot build message: {e}")))
    }
}

impl EmailNotifier {
    /// The configured `From`.
    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// Sends a message built elsewhere (Watcher's email action), with the
    /// same timeout and error classification.
    pub async fn send_message(&self, msg: Message) -> Result<(), NotifyError> {
        let r = tokio::time::timeout(self.timeout, self.transport.send(msg)).await;
        self.verdict("SMTP send did not finish", r.map(|r| r.map(drop)))
    }

    /// An SMTP exchange's outcome within the timeout: a 5xx is permanent,
    /// anything else (4xx, network, no answer) may pass.
    fn verdict(
        &self,
        late: &str,
        r: Result<Result<(), lettre::transport::smtp::Error>, tokio::time::error::Elapsed>,
    ) -> Result<(), NotifyError> {
        match r {
            Err(_) => Err(NotifyError::transient(
                Medium::Email,
                format!("{late} within {}", humantime::format_duration(self.timeout)),
            )),
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.is_permanent() => {
                Err(NotifyError::permanent(Medium::Email, format!("SMTP: {e}")))
            }
            Ok(Err(e)) => Err(NotifyError::transient(Medium::Email, format!("SMTP: {e}"))),
        }
    }
}

impl EmailNotifier {
    /// Connects, says `NOOP` and quits, within the timeout: the relay is
    /// reachable, TLS works and the credentials are accepted.
    pub async fn healthcheck(&self) -> Result<(), NotifyError> {
        let r = tokio::time::timeout(self.timeout, self.transport.test_connection()).await;
        match r {
            Ok(Ok(false)) => Err(NotifyError::transient(
                Medium::Email,
                "the SMTP server did not answer NOOP",
            )),
            r => self.verdict("no answer from the SMTP server", r.map(|r| r.map(drop))),
        }
    }
}

impl Notifier for EmailNotifier {
    fn medium(&self) -> Medium {
        Medium::Email
    }

    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let msg = self.message(n)?;
            self.send_message(msg).await
        })
    }
}
