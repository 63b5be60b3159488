//! `{"type": "elasticsearch"}`: a history of notifications in an index, one
//! document per notification and per resolution, so that teams can chart
//! their alerts in Kibana or OpenSearch Dashboards, as Watcher's history and
//! ElastAlert's writeback index allow.
//!
//! Documents go with `_bulk` `create`, each with an `_id` derived from what
//! it records: a send retried after a lost answer meets a 409 and is not
//! indexed twice, and `create` is also what a data stream requires.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use super::destinations::{Context, DestinationType, SettingError, settings};
use super::{Message, Sink, SinkError};
use crate::alert::HumanDuration;
use crate::config::EsConfig;
use crate::notify::Notification;
use crate::search::EsClient;

/// The settings of an `elasticsearch` destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryConfig {
    /// The index or data stream written to. `%Y`, `%m`, `%d` and `%H` are
    /// the notification's UTC year, month, day and hour (`%%` is a `%`), so
    /// the default makes one index a day.
    #[serde(default = "default_index")]
    index: String,
    /// Another cluster than the searched one, by its base URL alone (no
    /// authentication; use `elasticsearch` for credentials or a CA).
    #[serde(default)]
    url: Option<String>,
    /// Another cluster than the searched one, with the settings of the
    /// top-level `elasticsearch` section (`url`, `username`, `password`,
    /// `api_key`, `ca_cert`, …).
    #[serde(default)]
    elasticsearch: Option<EsConfig>,
    /// Overall time for one write (default 30s).
    #[serde(default = "crate::config::default_timeout")]
    timeout: HumanDuration,
}

fn default_index() -> String {
    "esalert-history-%Y.%m.%d".into()
}

/// Characters an index or data stream name may not hold.
const INDEX_FORBIDDEN: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];

/// The index name for a notification at `t`: the date fields of
/// [`HistoryConfig::index`] filled in. Errors say what is wrong with the
/// pattern (checked when the destination is built).
fn index_name(pattern: &str, t: &chrono::DateTime<chrono::Utc>) -> Result<String, String> {
    use chrono::{Datelike, Timelike};
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&format!("{:04}", t.year())),
            Some('m') => out.push_str(&format!("{:02}", t.month())),
            Some('d') => out.push_str(&format!("{:02}", t.day())),
            Some('H') => out.push_str(&format!("{:02}", t.hour())),
            Some('%') => out.push('%'),
            Some(other) => {
                return Err(format!(
                    "`%{other}` is not a date field; use %Y, %m, %d, %H (or %% for a %)"
                ));
            }
            None => return Err("ends with a lone `%`; write %% for a %".into()),
        }
    }
    if out.is_empty() {
        return Err("is empty; name an index or data stream".into());
    }
    if out != out.to_lowercase() {
        return Err("must be lower case (Elasticsearch refuses upper-case index names)".into());
    }
    if let Some(c) = out.chars().find(|c| INDEX_FORBIDDEN.contains(c)) {
        return Err(format!("holds {c:?}, which index names may not"));
    }
    if out.starts_with(['-', '_', '+', '.']) {
        return Err("may not start with -, _, + or .".into());
    }
    if out.len() > 255 {
        return Err("is longer than 255 bytes".into());
    }
    Ok(out)
}

struct HistorySink {
    name: String,
    es: EsClient,
    index: String,
    timeout: Duration,
}

/// The cluster a destination writes to (the searched one unless `url` or
/// `elasticsearch` names another) and the setting that named it (`""`: the
/// searched cluster). Checks the index pattern too.
fn cluster(
    cfg: &HistoryConfig,
    searched: &EsConfig,
) -> Result<(EsConfig, &'static str), SettingError> {
    index_name(&cfg.index, &chrono::Utc::now())
        .map_err(|e| SettingError::at("index", format!("`index` {e}")))?;
    let (es, at) = match (&cfg.url, &cfg.elasticsearch) {
        (Some(_), Some(_)) => {
            return Err(SettingError::at(
                "url",
                "give the other cluster either as `url` or as `elasticsearch`, not both",
            ));
        }
        (Some(url), None) => {
            let es: EsConfig = serde_json::from_value(json!({ "url": url }))
                .map_err(|e| SettingError::at("url", e.to_string()))?;
            (es, "url")
        }
        (None, Some(es)) => (es.clone(), "elasticsearch.url"),
        (None, None) => (searched.clone(), ""),
    };
    if !at.is_empty() {
        let ok = url::Url::parse(&es.url)
            .ok()
            .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        if !ok {
            return Err(SettingError::at(
                at,
                format!(
                    "`{at}` must be an http:// or https:// URL, e.g. \"https://history.example:9200\""
                ),
            ));
        }
    }
    Ok((es, at))
}

/// Where the history of notifications can be read back: the first
/// `elasticsearch` destination's cluster and index pattern.
#[derive(Debug, Clone)]
pub struct HistoryTarget {
    /// The destination's name in credentials.json.
    pub destination: String,
    /// Its cluster.
    pub es: EsConfig,
    /// Its index pattern (with `%Y`-style date fields).
    pub index: String,
}

impl HistoryTarget {
    /// The history destination of `creds`, if it has one (an error: its
    /// settings are wrong, as `check` would say).
    pub fn of(creds: &crate::config::Credentials) -> Option<Result<HistoryTarget, String>> {
        let (name, v) = creds
            .outputs
            .iter()
            .find(|(_, v)| v.get("type").and_then(Value::as_str) == Some(TYPE.name))?;
        let target = settings::<HistoryConfig>(v)
            .and_then(|cfg| {
                let (es, _) = cluster(&cfg, &creds.elasticsearch)?;
                Ok(HistoryTarget {
                    destination: name.clone(),
                    es,
                    index: cfg.index,
                })
            })
            .map_err(|e| format!("destination {name:?}: {}", e.message));
        Some(target)
    }
}

/// `{"type": "elasticsearch", "index": "esalert-history-%Y.%m.%d"}`.
pub(super) static TYPE: DestinationType = DestinationType {
    name: "elasticsearch",
    overridable: &[],
    build,
    lint: super::destinations::no_lint,
    notices: false,
};

fn build(name: &str, v: &Value, cx: &Context<'_>) -> Result<Arc<dyn Sink>, SettingError> {
    let cfg: HistoryConfig = settings(v)?;
    let (es, at) = cluster(&cfg, &cx.credentials.elasticsearch)?;
    let es = EsClient::new(&es).map_err(|e| {
        SettingError::at(
            if at.is_empty() { "" } else { "elasticsearch" },
            e.to_string(),
        )
    })?;
    Ok(Arc::new(HistorySink {
        name: name.to_owned(),
        es,
        index: cfg.index,
        timeout: cfg.timeout.value,
    }))
}

/// The document recording `n`, with its `_id` (see the module's doc).
fn document(n: &Notification) -> Value {
    let outcome = if n.resolved { "resolved" } else { "fired" };
    let time = crate::render::fmt_time(&n.time);
    let incident = n.incident_key();
    let id_input = format!("{incident}\0{outcome}\0{time}");
    let digest = ring::digest::digest(&ring::digest::SHA256, id_input.as_bytes());
    let id: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut doc = json!({
        "@timestamp": time,
        "alert": n.alert,
        "key": n.key,
        "outcome": outcome,
        "hits": n.hits,
        "subject": n.rendered.subject,
        "message": n.rendered.text,
        "incident_key": incident,
    });
    if let Some(w) = &n.window {
        doc["window"] = json!({
            "start": crate::render::fmt_time(&w.start),
            "end": crate::render::fmt_time(&w.end),
        });
    }
    // Last, so that taking it out for the bulk metadata keeps the order.
    doc["_id"] = json!(id);
    doc
}

/// The verdict on a `_bulk` answer: every item created, or already there
/// (409: an earlier try of this send got through); otherwise the first
/// failed item's error, transient for 429 and 5xx.
fn verdict(sink: &str, index: &str, answer: &Value) -> Result<(), SinkError> {
    if answer["errors"].as_bool() == Some(false) {
        return Ok(());
    }
    let Some(items) = answer["items"].as_array() else {
        return Err(SinkError::transient(
            sink,
            format!("the _bulk answer for {index} has no `items`"),
        ));
    };
    let mut transient = None;
    for (i, item) in items.iter().enumerate() {
        let r = item
            .as_object()
            .and_then(|m| m.values().next())
            .unwrap_or(&Value::Null);
        let status = r["status"].as_u64().unwrap_or(0);
        if (200..300).contains(&status) || status == 409 {
            continue;
        }
        let e = &r["error"];
        let what = format!(
            "document {i} refused by {}: HTTP {status}: {}: {}",
            r["_index"].as_str().unwrap_or(index),
            e["type"].as_str().unwrap_or("unknown"),
            e["reason"]
                .as_str()
                .map(|s| super::http::truncate(s, 300))
                .unwrap_or_default()
        );
        if status == 429 || status >= 500 {
            transient.get_or_insert(what);
        } else {
            // A mapping conflict stays until someone changes the index.
            return Err(SinkError::permanent(sink, what));
        }
    }
    match transient {
        Some(what) => Err(SinkError::transient(sink, what)),
        None => Ok(()),
    }
}

impl HistorySink {
    fn error(&self, e: crate::search::SearchError) -> SinkError {
        if e.is_transient() {
            SinkError::transient(&self.name, e.to_string())
        } else {
            SinkError::permanent(&self.name, e.to_string())
        }
    }

    fn late(&self) -> SinkError {
        SinkError::transient(
            &self.name,
            format!(
                "no answer from {} within {}",
                self.es.url(),
                humantime::format_duration(self.timeout)
            ),
        )
    }
}

impl Sink for HistorySink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let notification = super::destinations::notification(&self.name, m)?;
            let index = index_name(&self.index, &notification.time)
                .map_err(|e| SinkError::permanent(&self.name, format!("`index` {e}")))?;
            let docs = [document(notification)];
            let answer = tokio::time::timeout(self.timeout, self.es.bulk_create(&index, &docs))
                .await
                .map_err(|_| self.late())?
                .map_err(|e| self.error(e))?;
            verdict(&self.name, &index, &answer)
        })
    }

    /// `_cluster/health`: reachable, credentials accepted, not red.
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let health = tokio::time::timeout(self.timeout, self.es.cluster_health())
                .await
                .map_err(|_| self.late())?
                .map_err(|e| self.error(e))?;
            match health["status"].as_str() {
                Some("red") => Err(SinkError::transient(
                    &self.name,
                    format!(
                        "{} is red: some primary shards are unassigned",
                        self.es.url()
                    ),
                )),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn index_patterns_take_date_fields_and_refuse_bad_names() {
        let t = chrono::Utc.with_ymd_and_hms(2026, 3, 7, 9, 0, 0).unwrap();
        assert_eq!(
            index_name("esalert-history-%Y.%m.%d", &t).unwrap(),
            "esalert-history-2026.03.07"
        );
        assert_eq!(index_name("h-%H%%", &t).unwrap(), "h-09%");
        assert!(index_name("h-%j", &t).unwrap_err().contains("%j"));
        assert!(index_name("h-%", &t).is_err());
        assert!(
            index_name("History", &t)
                .unwrap_err()
                .contains("lower case")
        );
        assert!(index_name("a*b", &t).is_err());
        assert!(index_name("_a", &t).is_err());
    }

    #[test]
    fn bulk_items_are_judged_one_by_one() {
        let ok = json!({"errors": false, "items": [{"create": {"status": 201}}]});
        assert!(verdict("h", "i", &ok).is_ok());
        let again = json!({"errors": true, "items": [{"create": {"status": 409,
            "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}}]});
        assert!(verdict("h", "i", &again).is_ok());
        let busy = json!({"errors": true, "items": [{"create": {"status": 429, "_index": "i",
            "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}}]});
        assert!(verdict("h", "i", &busy).unwrap_err().is_transient());
        let mapping = json!({"errors": true, "items": [{"create": {"status": 400, "_index": "i",
            "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [hits]"}}}]});
        let e = verdict("h", "i", &mapping).unwrap_err();
        assert!(!e.is_transient());
        assert!(e.to_string().contains("mapper_parsing_exception"), "{e}");
    }
}
