//! Email: native notifications as multipart mail, Watcher messages as written.

use std::sync::Arc;

use super::destinations::{DestinationType, SettingError, settings};
use super::{EmailMessage, Message, Sink, SinkError};
use crate::alert::Medium;
use crate::config::EmailConfig;
use crate::notify::email::EmailNotifier;
use crate::notify::{Notifier, Notifiers};
use futures::future::BoxFuture;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart, header::ContentType};

#[derive(Debug, Clone)]
struct XPriority(String);

impl lettre::message::header::Header for XPriority {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("X-Priority")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(XPriority(s.to_owned()))
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

fn boxes(list: &[String], what: &str) -> Result<Vec<Mailbox>, SinkError> {
    list.iter()
        .map(|a| {
            a.parse::<Mailbox>()
                .map_err(|e| SinkError::permanent("email", format!("{what} address {a:?}: {e}")))
        })
        .collect()
}

impl EmailMessage {
    fn build(&self, from: &Mailbox) -> Result<lettre::Message, SinkError> {
        let mut b = lettre::Message::builder()
            .from(from.clone())
            .subject(crate::render::one_line(&self.subject))
            .message_id(None);
        let to = boxes(&self.to, "to")?;
        if to.is_empty() {
            return Err(SinkError::permanent(
                "email",
                "no recipients: the action's `to` is empty",
            ));
        }
        for m in to {
            b = b.to(m);
        }
        for m in boxes(&self.cc, "cc")? {
            b = b.cc(m);
        }
        for m in boxes(&self.bcc, "bcc")? {
            b = b.bcc(m);
        }
        for m in boxes(&self.reply_to, "reply_to")? {
            b = b.reply_to(m);
        }
        if let Some(p) = &self.priority {
            let x = match p.as_str() {
                "highest" => "1",
                "high" => "2",
                "low" => "4",
                "lowest" => "5",
                _ => "3",
            };
            b = b.header(XPriority(x.into()));
        }
        let body = match &self.html {
            Some(h) => MultiPart::alternative_plain_html(self.text.clone(), h.clone()),
            None => MultiPart::mixed().singlepart(SinglePart::plain(self.text.clone())),
        };
        let mut mixed = MultiPart::mixed().multipart(body);
        for a in &self.attachments {
            let ct = ContentType::parse(&a.content_type).map_err(|e| {
                SinkError::permanent("email", format!("content type {:?}: {e}", a.content_type))
            })?;
            mixed = mixed.singlepart(Attachment::new(a.filename.clone()).body(a.data.clone(), ct));
        }
        b.multipart(mixed)
            .map_err(|e| SinkError::permanent("email", format!("cannot build message: {e}")))
    }
}

pub(super) struct EmailSink {
    /// The destination's name (`email` for the top-level section).
    name: String,
    notifier: Arc<dyn Notifier>,
    client: Option<Arc<EmailNotifier>>,
}

impl EmailSink {
    pub(super) fn build(n: &Notifiers) -> Option<EmailSink> {
        let notifier = n.get(Medium::Email).ok()?.clone();
        Some(EmailSink {
            name: "email".into(),
            notifier,
            client: n.email_client().cloned(),
        })
    }
}

/// `{"type": "email", …}`: the settings of the top-level `email` section,
/// so that alerts can go to different SMTP relays or recipients.
pub(super) static TYPE: DestinationType = DestinationType {
    name: "email",
    overridable: &["to", "cc", "bcc", "reply_to", "format"],
    build: |name, v, _| {
        let cfg: EmailConfig = settings(v)?;
        let client =
            Arc::new(EmailNotifier::new(&cfg).map_err(|e| SettingError::at("", e.to_string()))?);
        Ok(Arc::new(EmailSink {
            name: name.to_owned(),
            notifier: client.clone(),
            client: Some(client),
        }))
    },
    lint: super::destinations::no_lint,
    notices: true,
};

impl Sink for EmailSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            match m {
                Message::Notification { notification, .. } => {
                    Ok(self.notifier.send(notification).await?)
                }
                Message::Email(e) => {
                    let client = self.client.as_ref().ok_or_else(|| {
                        SinkError::permanent("email", "no SMTP client for this message")
                    })?;
                    let msg = e.build(client.from())?;
                    Ok(client.send_message(msg).await?)
                }
                other => Err(SinkError::permanent(
                    "email",
                    format!("cannot send a {} message", other.sink()),
                )),
            }
        })
    }

    /// SMTP `NOOP` on a fresh connection (with TLS and login as configured).
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            match &self.client {
                Some(c) => Ok(c.healthcheck().await?),
                None => Ok(()),
            }
        })
    }
}
