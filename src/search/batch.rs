//! Batching: searches issued together (alerts due at the same tick) go to
//! the cluster as one `_msearch` request, each body still its own search.
//!
//! A search joins the open batch; the batch is sent when it is full or
//! when no other search joined for [`LINGER`]. Each item's answer is mapped
//! back exactly as a single search's would be: an item error is the error
//! its status would have been, a partial item is partial, an item the
//! cluster sheds (429, 502–504) is retried alone with the client's
//! backoff. A failure of the whole request is every item's failure. A
//! batch of one is a plain search.
//!
//! With batching, `--max-concurrency` bounds the requests in flight to the
//! cluster (one slot per request), not the searches waiting in a batch.
//!
//! Elasticsearch and OpenSearch parse every body of an `_msearch` before
//! running any: one body that does not parse fails the whole request with
//! a 400. Then each search is sent alone, so each alert gets its own
//! answer, and an alert whose search the cluster refuses is sent alone from
//! then on (until its search succeeds), so it can't spoil later batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{EsClient, SearchError, SearchResult, partial_reason, status_error};
use crate::alert::ByteSize;

/// How long an open batch waits for another search before it is sent.
pub const LINGER: Duration = Duration::from_millis(10);
/// The longest an open batch waits, however many keep joining: the
/// searches of alerts a fold found matching arrive over tens of
/// milliseconds on a busy machine (each renders its body first).
const MAX_WAIT: Duration = Duration::from_millis(100);
/// The most a whole `_msearch` answer may be.
const MAX_ANSWER: u64 = 1 << 30;

/// One search waiting in a batch.
struct Job {
    alert: Option<String>,
    indices: Vec<String>,
    body: Value,
    cap: ByteSize,
    reply: oneshot::Sender<Result<SearchResult, SearchError>>,
}

/// Alerts whose searches go alone (the cluster refused one).
type Solo = Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

/// Collects searches into `_msearch` requests.
#[derive(Debug)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
    solo: Solo,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("alert", &self.alert).finish()
    }
}

impl Batcher {
    /// Starts the collector: batches of at most `size` searches, sent by
    /// `client` (itself without batching), each request holding one of
    /// `slots` while in flight.
    pub fn start(client: EsClient, size: usize, slots: Option<Arc<Semaphore>>) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let solo = Solo::default();
        tokio::spawn(collect(client, size.max(1), slots, rx, solo.clone()));
        Batcher { tx, solo }
    }

    /// Runs one search as part of a batch.
    pub(super) async fn search(
        &self,
        client: &EsClient,
        alert: Option<&str>,
        indices: &[String],
        body: &Value,
        cap: ByteSize,
    ) -> Result<SearchResult, SearchError> {
        if let Some(a) = alert
            && self
                .solo
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(a)
        {
            let r = client.search_single(alert, indices, body, Some(cap)).await;
            if r.is_ok() {
                self.solo
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(a);
            }
            return r;
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            alert: alert.map(str::to_owned),
            indices: indices.to_vec(),
            body: body.clone(),
            cap,
            reply,
        };
        if self.tx.send(job).is_err() {
            // The collector is gone (runtime shutting down): search alone.
            return client.search_single(alert, indices, body, Some(cap)).await;
        }
        match answer.await {
            Ok(r) => r,
            Err(_) => client.search_single(alert, indices, body, Some(cap)).await,
        }
    }
}

async fn collect(
    client: EsClient,
    size: usize,
    slots: Option<Arc<Semaphore>>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    solo: Solo,
) {
    while let Some(first) = rx.recv().await {
        let jobs = gather(&mut rx, first, size, LINGER, MAX_WAIT).await;
        let client = client.clone();
        let slots = slots.clone();
        let solo = solo.clone();
        tokio::spawn(async move {
            let _slot = match &slots {
                Some(s) => s.clone().acquire_owned().await.ok(),
                None => None,
            };
            send(&client, jobs, &solo).await;
        });
    }
}

/// `first` and what else arrives until none did for `linger`, `max_wait`
/// has passed, or there are `size`.
pub(super) async fn gather<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    first: T,
    size: usize,
    linger: Duration,
    max_wait: Duration,
) -> Vec<T> {
    let mut jobs = vec![first];
    let opened = Instant::now();
    while jobs.len() < size {
        let left = max_wait.saturating_sub(opened.elapsed());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(linger.min(left), rx.recv()).await {
            Ok(Some(j)) => jobs.push(j),
            Ok(None) | Err(_) => break,
        }
    }
    jobs
}

/// Sends one batch and answers each of its searches.
async fn send(client: &EsClient, mut jobs: Vec<Job>, solo: &Solo) {
    if jobs.len() == 1 {
        if let Some(j) = jobs.pop() {
            let r = client
                .search_retrying(j.alert.as_deref(), &j.indices, &j.body, Some(j.cap))
                .await;
            let _ = j.reply.send(r);
        }
        return;
    }
    let mut ndjson = Vec::new();
    for j in &jobs {
        let header = serde_json::json!({ "index": j.indices.iter().map(|i| i.trim()).collect::<Vec<_>>().join(",") });
        for line in [&header, &j.body] {
            if serde_json::to_writer(&mut ndjson, line).is_err() {
                ndjson.clear();
            }
            ndjson.push(b'\n');
        }
    }
    let cap = ByteSize::new(
        jobs.iter()
            .map(|j| j.cap.bytes())
            .fold(0u64, u64::saturating_add)
            .min(MAX_ANSWER),
    )
    .unwrap_or(ByteSize::DEFAULT_RESPONSE);
    let started = Instant::now();
    let whole = {
        use backon::Retryable;
        let (tries, delay) = client.retry;
        let url = format!("{}/_msearch", client.base);
        (|| {
            client.request_raw(
                reqwest::Method::POST,
                &url,
                &[],
                ndjson.clone(),
                "application/x-ndjson",
                cap,
            )
        })
        .retry(
            backon::ExponentialBuilder::default()
                .with_min_delay(delay)
                .with_max_delay(delay * 8)
                .with_max_times(tries.saturating_sub(1))
                .with_jitter(),
        )
        .when(|e| {
            matches!(
                e,
                SearchError::TooManyRequests { .. }
                    | SearchError::Server {
                        status: 502..=504,
                        ..
                    }
            )
        })
        .notify(|e, d| {
            let retry_in_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(event = "search_retry", searches = jobs.len(), error = %e, retry_in_ms);
        })
        .await
    };
    let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let answers = match whole {
        // A body the cluster refuses fails the whole request: each alone.
        Err(SearchError::Request { .. }) => {
            for j in jobs {
                let r = client
                    .search_single(j.alert.as_deref(), &j.indices, &j.body, Some(j.cap))
                    .await;
                if let (Err(SearchError::Request { .. }), Some(a)) = (&r, &j.alert) {
                    solo.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(a.clone());
                }
                let _ = j.reply.send(r);
            }
            return;
        }
        Err(e) => {
            tracing::warn!(event = "msearch_failed", searches = jobs.len(), error = %e);
            for j in jobs {
                let _ = j.reply.send(Err(e.duplicate()));
            }
            return;
        }
        Ok(r) => r.response,
    };
    let mut answers = answers;
    let items = match answers.get_mut("responses") {
        Some(Value::Array(items)) if items.len() == jobs.len() => std::mem::take(items),
        _ => {
            let e = SearchError::NotJson {
                status: 200,
                detail: format!(
                    "an _msearch answer without one response per search ({} sent)",
                    jobs.len()
                ),
                snippet: answers.to_string().chars().take(200).collect(),
            };
            for j in jobs {
                let _ = j.reply.send(Err(e.duplicate()));
            }
            return;
        }
    };
    let mut retries = Vec::new();
    for (j, mut item) in jobs.into_iter().zip(items) {
        let status = item
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(200);
        if let Some(o) = item.as_object_mut() {
            o.remove("status");
        }
        let result = if item.get("error").is_some() || !(200..300).contains(&status) {
            let bytes = serde_json::to_vec(&item).unwrap_or_default();
            let code = reqwest::StatusCode::from_u16(status)
                .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
            let code = if code.is_success() {
                reqwest::StatusCode::INTERNAL_SERVER_ERROR
            } else {
                code
            };
            match status_error(code, &bytes) {
                // Shed load: this search alone, with the client's backoff.
                SearchError::TooManyRequests { .. }
                | SearchError::Server {
                    status: 502..=504, ..
                } => {
                    retries.push(j);
                    continue;
                }
                e => Err(e),
            }
        } else if longer_than(&item, j.cap.bytes()) {
            Err(SearchError::TooLarge { cap: j.cap })
        } else {
            Ok(SearchResult {
                partial: partial_reason(&item),
                response: item,
                took_ms,
            })
        };
        let _ = j.reply.send(result);
    }
    for j in retries {
        let r = client
            .search_retrying(j.alert.as_deref(), &j.indices, &j.body, Some(j.cap))
            .await;
        let _ = j.reply.send(r);
    }
}

/// Whether `v` as JSON is longer than `cap` bytes: counted as it is
/// written, without a copy, and given up as soon as it is.
fn longer_than(v: &Value, cap: u64) -> bool {
    struct Count(u64, u64);
    impl std::io::Write for Count {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(data.len() as u64);
            if self.0 > self.1 {
                return Err(std::io::Error::other("over the cap"));
            }
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Count(0, cap), v).is_err()
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn lengths_are_those_of_the_json_text() {
        let v = serde_json::json!({"a": 1});
        assert_eq!(v.to_string().len(), 7);
        assert!(!super::longer_than(&v, 7));
        assert!(super::longer_than(&v, 6));
    }
}
