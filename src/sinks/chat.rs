//! What the chat destinations (Teams, Telegram, Discord) share: the
//! notification a message carries, a title that marks resolved notices, a
//! message cut into pieces that fit a provider's limit as that provider
//! measures it, and posting the pieces so that a retry does not repeat the
//! ones already delivered.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use serde_json::Value;

use super::{SinkError, http};
use crate::notify::Notification;
use crate::render::fmt_time;

/// The most posts one notification becomes; the rest of a longer message
/// is cut with [`CUT`], so one huge response can't flood a channel.
pub(super) const MAX_PARTS: usize = 10;

/// Ends the last piece of a message that was cut after [`MAX_PARTS`].
pub(super) const CUT: &str = "\n… (cut: the message is too long)";

/// The longest title, in characters: it goes on every post of a message,
/// so a huge subject must not eat the room for the message.
const MAX_TITLE: usize = 256;

/// The subject, marked when the notification says the match is over.
pub(super) fn title(n: &Notification) -> String {
    let subject = http::truncate(&n.rendered.subject, MAX_TITLE);
    if n.resolved {
        format!("✅ Resolved: {subject}")
    } else {
        subject
    }
}

/// `(i/n)` after the title of a message in several posts; nothing for one.
pub(super) fn part_label(i: usize, total: usize) -> String {
    if total > 1 {
        format!(" ({}/{total})", i.saturating_add(1))
    } else {
        String::new()
    }
}

/// The widest [`part_label`] can be.
pub(super) fn widest_label() -> String {
    part_label(MAX_PARTS - 1, MAX_PARTS)
}

/// The searched window as `start – end`, when there was one.
pub(super) fn window_text(n: &Notification) -> Option<String> {
    n.window
        .as_ref()
        .map(|w| format!("{} – {}", fmt_time(&w.start), fmt_time(&w.end)))
}

/// `text` in at most [`MAX_PARTS`] pieces whose `measure` is at most `max`
/// each, cut at line breaks where possible. The measure is the provider's
/// (bytes of the whole JSON payload, characters after HTML escaping, …):
/// pieces are cut from the raw text and measured as they will be sent, so
/// a cut never falls inside an escape.
pub(super) fn fit(text: &str, max: usize, measure: impl Fn(&str) -> usize) -> Vec<String> {
    fn go(text: &str, chars: usize, max: usize, m: &dyn Fn(&str) -> usize, out: &mut Vec<String>) {
        for piece in http::split(text, chars.max(1)) {
            let n = piece.chars().count();
            let size = m(&piece);
            if size <= max || n <= 1 {
                out.push(piece);
            } else {
                // As many characters as would fit at this piece's density.
                let next = (n.saturating_mul(max) / size).clamp(1, n - 1);
                go(&piece, next, max, m, out);
            }
        }
    }
    let overhead = measure("");
    let room = max.saturating_sub(measure(CUT).saturating_sub(overhead));
    let mut out = Vec::new();
    go(
        text,
        room.saturating_sub(overhead),
        room,
        &measure,
        &mut out,
    );
    if out.len() > MAX_PARTS {
        out.truncate(MAX_PARTS);
        if let Some(last) = out.last_mut() {
            last.push_str(CUT);
        }
    }
    out
}

/// The length of `s` as Telegram and Discord count it (UTF-16 units), so a
/// character outside the BMP counts twice, as it does for them.
pub(super) fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// How many posts of each multi-post message were delivered, so that a
/// retry (of the whole message, by the pipeline) sends only the rest.
#[derive(Default)]
pub(super) struct Parts {
    /// By the SHA-256 of the message's payloads.
    done: Mutex<HashMap<Vec<u8>, usize>>,
}

/// Remembered messages beyond which the oldest progress is forgotten (at
/// worst a retry repeats a post).
const REMEMBERED: usize = 1024;

impl Parts {
    /// Posts each payload in order with `post`, skipping those an earlier
    /// attempt of the same payloads delivered; stops at the first error.
    pub(super) async fn post_all<F, Fut>(
        &self,
        payloads: &[Value],
        post: F,
    ) -> Result<(), SinkError>
    where
        F: Fn(&Value) -> Fut,
        Fut: Future<Output = Result<(), SinkError>>,
    {
        if let [one] = payloads {
            return post(one).await;
        }
        let key = ring::digest::digest(
            &ring::digest::SHA256,
            &serde_json::to_vec(payloads).unwrap_or_default(),
        )
        .as_ref()
        .to_vec();
        let start = self.lock().get(&key).copied().unwrap_or(0);
        for (i, p) in payloads.iter().enumerate().skip(start) {
            if let Err(e) = post(p).await {
                let mut done = self.lock();
                if e.is_transient() {
                    if done.len() >= REMEMBERED {
                        done.clear();
                    }
                    done.insert(key, i);
                } else {
                    done.remove(&key);
                }
                return Err(e);
            }
        }
        self.lock().remove(&key);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, usize>> {
        self.done.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A notification to try a layout or template on (when a destination
/// is built, and in tests). Made from JSON: `Notification::new` (engine.rs)
/// wants a whole native alert.
pub(super) fn example() -> Notification {
    Notification::of(
        "example",
        crate::render::Rendered::from_data("subject".into(), "message".into()),
        1,
        chrono::Utc::now(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_fit_the_providers_measure_and_are_capped() {
        let esc = |s: &str| crate::render::html_escape(s).chars().count();
        let text = "<&>".repeat(60);
        let pieces = fit(&text, 200, esc);
        assert!(pieces.len() > 1 && pieces.len() < MAX_PARTS, "{pieces:?}");
        assert!(pieces.iter().all(|p| esc(p) <= 200), "{pieces:?}");
        assert_eq!(pieces.concat(), text);
        let huge = "x\n".repeat(100_000);
        let pieces = fit(&huge, 50, |s| s.chars().count());
        assert_eq!(pieces.len(), MAX_PARTS);
        assert!(pieces[MAX_PARTS - 1].ends_with(CUT));
        assert!(pieces.iter().all(|p| p.chars().count() <= 50));
        assert_eq!(utf16_len("a😀"), 3);
        let mut n = example();
        n.rendered.subject = "s".repeat(10_000);
        assert_eq!(title(&n).chars().count(), MAX_TITLE);
    }

    #[tokio::test]
    async fn a_retry_sends_only_the_posts_not_yet_delivered() {
        let parts = Parts::default();
        let payloads = vec![Value::from(1), Value::from(2), Value::from(3)];
        let sent = Mutex::new(Vec::new());
        let fail_on = Mutex::new(Some(Value::from(2)));
        let post = |v: &Value| {
            let v = v.clone();
            let (sent, fail_on) = (&sent, &fail_on);
            async move {
                if fail_on.lock().unwrap().take_if(|f| *f == v).is_some() {
                    return Err(SinkError::transient("x", "429"));
                }
                sent.lock().unwrap().push(v);
                Ok(())
            }
        };
        assert!(parts.post_all(&payloads, post).await.is_err());
        parts.post_all(&payloads, post).await.unwrap();
        assert_eq!(*sent.lock().unwrap(), payloads);
        parts.post_all(&payloads, post).await.unwrap();
        assert_eq!(sent.lock().unwrap().len(), 6, "a new send starts over");
    }
}
