//! Folding: the counts of many alerts in one search.
//!
//! Alerts whose run a hit count can decide (see
//! [`crate::rule::RuleBody::foldable`]), due together, searching the same
//! indices over the same window with the same sort, are counted by one
//! search: `size: 0`, `track_total_hits: false`, a `filters` aggregation
//! with one filter per alert (its whole query), and as the query the
//! clauses every one of those queries requires (the window's range, as a
//! rule is usually written), so the filters only look at the window's
//! documents. A bucket's count is exactly the hit count of the alert's own
//! search, since the alert's query implies the common clauses.
//!
//! Only what a search alone would give the same way is answered by the
//! fold: a count below the cap at which the alert's own search would stop
//! counting (`track_total_hits`, 10,000 by default). Anything else — a
//! fold search that fails or is partial, a missing bucket, a count at the
//! cap — is answered [`Counted::Search`]: the alert runs its own search, as
//! without folding, and gets its own answer (its error, its partial
//! result). An alert whose own search the cluster then refuses or answers
//! partially is not folded again until its search succeeds, so it can't
//! spoil its neighbours' folds tick after tick.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{EsClient, SearchError, SearchResult};
use crate::render::Window;

/// How long an open fold waits for another alert before it is sent: the
/// runs of one tick reach it over some milliseconds (each reads its state
/// and renders its body first), and a fold that closes early is one more
/// search.
const LINGER: Duration = Duration::from_millis(20);
/// The longest an open fold waits, however many keep joining.
const MAX_WAIT: Duration = Duration::from_millis(250);
/// The aggregation's name in the folded search.
const AGG: &str = "esalert_fold";
/// Hits a search counts when its body doesn't say (`track_total_hits`).
const DEFAULT_TRACK: u64 = 10_000;
/// `from` + `size` beyond this fails a search (`index.max_result_window`).
const MAX_WINDOW: u64 = 10_000;
/// Body keys that don't change a search's hit count, nor make it fail when
/// it finds nothing. `sort` can fail (an unmapped field): it goes into the
/// folded search, so that fails too and every alert searches alone.
const NEUTRAL: &[&str] = &[
    "query",
    "size",
    "from",
    "sort",
    "track_total_hits",
    "_source",
    "fields",
    "docvalue_fields",
    "stored_fields",
    "highlight",
    "version",
    "seq_no_primary_term",
    "track_scores",
    "explain",
];

/// What a fold says about one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// The hit count its own search would report, exactly.
    Count {
        /// The count.
        count: u64,
        /// The folded search's wall time.
        took_ms: u64,
    },
    /// Search alone: the fold can't say what its own search would.
    Search,
}

/// A response as the cluster gives it for `count` hits, without the hits:
/// what a rule whose count alone decides it is evaluated on when folded.
pub fn counted(count: u64) -> Value {
    json!({
        "took": 0,
        "timed_out": false,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": count, "relation": "eq"}, "max_score": null, "hits": []},
    })
}

/// The parts of a search body a fold uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    /// The query (`match_all` when absent).
    query: Value,
    /// The sort, if any.
    sort: Option<Value>,
    /// Counts from this one up are reported as a lower bound by the
    /// alert's own search.
    cap: u64,
}

/// Whether a search body can be counted in a fold, and its parts; or why
/// not, for `esalert test`.
pub fn parts(body: &Value) -> Result<Parts, String> {
    let Value::Object(m) = body else {
        return Err("the search body is not an object".into());
    };
    if let Some(k) = m.keys().find(|k| !NEUTRAL.contains(&k.as_str())) {
        return Err(format!(
            "the search body has `{k}`, which a count alone can't stand for"
        ));
    }
    let cap = match m.get("track_total_hits") {
        None => DEFAULT_TRACK,
        Some(Value::Bool(true)) => u64::MAX,
        Some(v) => match v.as_u64() {
            Some(n) => n,
            None => return Err("`track_total_hits` is not true or a count".into()),
        },
    };
    let number = |k: &str| match m.get(k) {
        None => Some(0),
        Some(v) => v.as_u64(),
    };
    match (number("from"), number("size").map(|s| s.max(1))) {
        (Some(f), Some(s)) if f.saturating_add(s) <= MAX_WINDOW => {}
        _ => return Err(format!("`from` + `size` is not at most {MAX_WINDOW}")),
    }
    Ok(Parts {
        query: m
            .get("query")
            .cloned()
            .unwrap_or_else(|| json!({"match_all": {}})),
        sort: m.get("sort").cloned(),
        cap,
    })
}

/// The clauses a query requires: itself, or the `must` and `filter`
/// clauses of a `bool` (and theirs), which every matching document matches.
fn required(q: &Value, out: &mut Vec<Value>) {
    if let Value::Object(m) = q
        && m.len() == 1
        && let Some(Value::Object(b)) = m.get("bool")
    {
        for k in ["filter", "must"] {
            match b.get(k) {
                Some(Value::Array(a)) => a.iter().for_each(|x| required(x, out)),
                Some(x @ Value::Object(_)) => required(x, out),
                _ => {}
            }
        }
        return;
    }
    if q.get("match_all").is_none() {
        out.push(q.clone());
    }
}

/// The folded search of `queries`: the clauses all of them require as its
/// query, one named filter each.
fn folded_body(queries: &[&Value], sort: Option<&Value>) -> Value {
    let mut common = Vec::new();
    if let Some(first) = queries.first() {
        required(first, &mut common);
    }
    for q in queries.iter().skip(1) {
        let mut theirs = Vec::new();
        required(q, &mut theirs);
        common.retain(|c| theirs.contains(c));
    }
    common.dedup();
    let filters: Map<String, Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| (i.to_string(), (*q).clone()))
        .collect();
    let mut body = json!({
        "size": 0,
        "track_total_hits": false,
        "aggs": {AGG: {"filters": {"filters": filters}}},
    });
    if !common.is_empty() {
        body["query"] = json!({"bool": {"filter": common}});
    }
    if let Some(s) = sort {
        body["sort"] = s.clone();
    }
    body
}

/// Each filter's count in a folded search's answer, by position.
fn counts(response: &Value, n: usize) -> Vec<Option<u64>> {
    let buckets = &response["aggregations"][AGG]["buckets"];
    (0..n)
        .map(|i| buckets[i.to_string()]["doc_count"].as_u64())
        .collect()
}

/// One alert waiting in a fold.
struct Job {
    alert: String,
    indices: Vec<String>,
    window: Window,
    parts: Parts,
    reply: oneshot::Sender<Counted>,
}

/// Collects counts into folded searches.
#[derive(Debug)]
pub struct Folder {
    tx: mpsc::UnboundedSender<Job>,
    /// Alerts whose own search was refused or partial: not folded until it
    /// succeeds.
    alone: Arc<Mutex<HashSet<String>>>,
}

impl Folder {
    /// Starts the collector: folded searches of at most `max` filters,
    /// sent by `client` (itself without folding; with batching, folded
    /// searches of several groups share an `_msearch`).
    pub fn start(client: EsClient, max: usize) -> Folder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(collect(client, max.max(2), rx));
        Folder {
            tx,
            alone: Arc::default(),
        }
    }

    fn is_alone(&self, alert: &str) -> bool {
        let alone = self.alone.lock().unwrap_or_else(PoisonError::into_inner);
        !alone.is_empty() && alone.contains(alert)
    }

    /// Notes how an alert's own search went.
    pub(super) fn note(&self, alert: &str, r: &Result<SearchResult, SearchError>) {
        let mut alone = self.alone.lock().unwrap_or_else(PoisonError::into_inner);
        match r {
            Ok(r) if r.partial.is_none() => {
                if !alone.is_empty() {
                    alone.remove(alert);
                }
            }
            Ok(_) | Err(SearchError::Request { .. }) => {
                alone.insert(alert.to_owned());
            }
            Err(_) => {}
        }
    }

    /// The count of one alert's search, folded with others' due together.
    pub(super) async fn count(
        &self,
        alert: &str,
        indices: &[String],
        body: &Value,
        window: Window,
    ) -> Counted {
        if self.is_alone(alert) {
            return Counted::Search;
        }
        let Ok(parts) = parts(body) else {
            return Counted::Search;
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            alert: alert.to_owned(),
            indices: indices.to_vec(),
            window,
            parts,
            reply,
        };
        if self.tx.send(job).is_err() {
            return Counted::Search;
        }
        answer.await.unwrap_or(Counted::Search)
    }
}

async fn collect(client: EsClient, max: usize, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let opened = Instant::now();
        loop {
            let left = MAX_WAIT.saturating_sub(opened.elapsed());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(LINGER.min(left), rx.recv()).await {
                Ok(Some(j)) => jobs.push(j),
                Ok(None) | Err(_) => break,
            }
        }
        // Same indices, window and sort: one group.
        let mut groups: BTreeMap<String, Vec<Job>> = BTreeMap::new();
        for j in jobs {
            let key = format!(
                "{}\u{0}{}\u{0}{}\u{0}{}",
                j.indices.join(","),
                j.window.start.timestamp_micros(),
                j.window.end.timestamp_micros(),
                j.parts
                    .sort
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_default()
            );
            groups.entry(key).or_default().push(j);
        }
        for (_, mut group) in groups {
            while !group.is_empty() {
                let rest = group.split_off(group.len().min(max));
                let chunk = std::mem::replace(&mut group, rest);
                if chunk.len() < 2 {
                    // Nothing to fold with: its own search costs the same.
                    for j in chunk {
                        let _ = j.reply.send(Counted::Search);
                    }
                    continue;
                }
                let client = client.clone();
                tokio::spawn(async move { fold(&client, chunk).await });
            }
        }
    }
}

/// Sends one folded search and answers each alert in it.
async fn fold(client: &EsClient, jobs: Vec<Job>) {
    let queries: Vec<&Value> = jobs.iter().map(|j| &j.parts.query).collect();
    let body = folded_body(&queries, jobs.first().and_then(|j| j.parts.sort.as_ref()));
    let indices = jobs.first().map(|j| j.indices.clone()).unwrap_or_default();
    let r = client.search_retrying(None, &indices, &body, None).await;
    let answered = match r {
        Ok(r) if r.partial.is_none() => Some((counts(&r.response, jobs.len()), r.took_ms)),
        Ok(r) => {
            tracing::debug!(
                event = "fold_partial",
                alerts = jobs.len(),
                reason = r.partial.as_deref().unwrap_or_default()
            );
            None
        }
        Err(e) => {
            tracing::debug!(event = "fold_failed", alerts = jobs.len(), error = %e);
            None
        }
    };
    let (counts, took_ms) = answered.unwrap_or_else(|| (vec![None; jobs.len()], 0));
    tracing::debug!(
        event = "folded",
        alerts = jobs.len(),
        first = jobs.first().map(|j| j.alert.as_str()).unwrap_or_default()
    );
    for (j, c) in jobs.into_iter().zip(counts) {
        let answer = match c {
            Some(count) if count < j.parts.cap => Counted::Count { count, took_ms },
            _ => Counted::Search,
        };
        let _ = j.reply.send(answer);
    }
}

impl EsClient {
    /// Folds the counts of alerts due together into searches of at most
    /// `max` filters (0: no folding). Call after
    /// [`with_batching`](Self::with_batching); needs a Tokio runtime.
    pub fn with_folding(mut self, max: usize) -> Self {
        self.fold = None;
        if max > 0 {
            let sender = self.clone();
            self.fold = Some(Arc::new(Folder::start(sender, max)));
        }
        self
    }

    /// Whether counts are folded.
    pub fn folds(&self) -> bool {
        self.fold.is_some()
    }

    /// The hit count of `alert`'s search of `indices` with `body` over
    /// `window`, folded with other alerts' searches due together; or
    /// [`Counted::Search`] when the alert must search alone.
    pub async fn fold_count(
        &self,
        alert: &str,
        indices: &[String],
        body: &Value,
        window: Window,
    ) -> Counted {
        match &self.fold {
            Some(f) => f.count(alert, indices, body, window).await,
            None => Counted::Search,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_that_a_count_stands_for() {
        let p = parts(
            &json!({"query": {"term": {"a": 1}}, "sort": [{"@timestamp": "desc"}], "size": 5}),
        )
        .unwrap();
        assert_eq!(p.cap, 10_000);
        assert_eq!(p.sort, Some(json!([{"@timestamp": "desc"}])));
        assert_eq!(
            parts(&json!({"track_total_hits": true})).unwrap().cap,
            u64::MAX
        );
        assert_eq!(parts(&json!({"track_total_hits": 50})).unwrap().cap, 50);
        assert_eq!(parts(&json!({})).unwrap().query, json!({"match_all": {}}));
        for bad in [
            json!({"aggs": {}}),
            json!({"post_filter": {}}),
            json!({"min_score": 1}),
            json!({"terminate_after": 5}),
            json!({"track_total_hits": false}),
            json!({"size": 20000}),
            json!({"from": 9999, "size": 2}),
            json!([1]),
        ] {
            assert!(parts(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn common_required_clauses_become_the_query() {
        let range = json!({"range": {"@timestamp": {"gte": "a", "lt": "b"}}});
        let q1 = json!({"bool": {"filter": [range, {"term": {"x": 1}}]}});
        let q2 = json!({"bool": {"must": {"bool": {"filter": {"bool": {"must": [range, {"term": {"x": 2}}]}}}},
            "must_not": [{"term": {"y": 1}}]}});
        let b = folded_body(&[&q1, &q2], None);
        assert_eq!(b["query"], json!({"bool": {"filter": [range]}}));
        assert_eq!(b["aggs"][AGG]["filters"]["filters"]["1"], q2);
        assert_eq!(b["size"], json!(0));
        assert_eq!(b["track_total_hits"], json!(false));
        // A should clause is not required; nothing common: no query.
        let q3 = json!({"bool": {"should": [range]}});
        assert!(folded_body(&[&q1, &q3], None).get("query").is_none());
        let resp = json!({"aggregations": {AGG: {"buckets": {"0": {"doc_count": 3}, "1": {"doc_count": 0}}}}});
        assert_eq!(counts(&resp, 3), vec![Some(3), Some(0), None]);
    }
}
