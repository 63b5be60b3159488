//! An alert's notifications from the history index, when credentials.json
//! has an `{"type": "elasticsearch"}` destination: what was sent is then
//! shown even after alerts.log has rotated and the outbox moved on.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::render::fmt_time;
use crate::search::EsClient;
use crate::sinks::history::HistoryTarget;

/// The most documents shown per alert.
const MAX_DOCS: u64 = 200;

/// One notification the history index holds.
#[derive(Debug, Clone, Serialize)]
pub struct Indexed {
    /// When it was sent.
    pub ts: String,
    /// Its group key.
    pub key: String,
    /// `fired` or `resolved`.
    pub outcome: String,
    /// The hits it stood for.
    pub hits: Option<u64>,
    /// Its subject.
    pub subject: String,
    /// Its text.
    pub message: String,
    /// The window that produced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Value>,
    /// The index it is in.
    pub index: String,
}

/// What the history index of `target` says about `alert` between `since`
/// and `until`: the documents, or why they could not be read.
pub async fn read(
    target: &HistoryTarget,
    alert: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Indexed>, String> {
    let name = &target.destination;
    let index = wildcard(&target.index);
    let client = EsClient::new(&target.es).map_err(|e| e.to_string())?;
    let body = json!({
        "size": MAX_DOCS,
        "sort": [{"@timestamp": {"order": "desc"}}],
        "query": {"bool": {
            "filter": [{"range": {"@timestamp": {"gte": fmt_time(&since), "lte": fmt_time(&until)}}}],
            "should": [{"term": {"alert": alert}}, {"term": {"alert.keyword": alert}}],
            "minimum_should_match": 1
        }}
    });
    let params = [
        ("ignore_unavailable".to_owned(), "true".to_owned()),
        ("allow_no_indices".to_owned(), "true".to_owned()),
    ];
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.search_with(std::slice::from_ref(&index), &params, &body),
    )
    .await
    .map_err(|_| format!("destination {name:?}: no answer within 5s"))?
    .map_err(|e| format!("destination {name:?}: {e}"))?;
    let hits = r.response["hits"]["hits"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(hits
        .iter()
        .map(|h| {
            let s = &h["_source"];
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
            Indexed {
                ts: text("@timestamp"),
                key: text("key"),
                outcome: text("outcome"),
                hits: s["hits"].as_u64(),
                subject: text("subject"),
                message: text("message"),
                window: s.get("window").cloned(),
                index: h["_index"].as_str().unwrap_or_default().to_owned(),
            }
        })
        .collect())
}

/// Every index the pattern makes: its date fields (`%Y`, `%m`, `%d`, `%H`)
/// as one wildcard.
fn wildcard(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('%', Some('Y' | 'm' | 'd' | 'H')) => {
                chars.next();
                out.push('*');
            }
            ('%', Some('%')) => {
                chars.next();
                out.push('%');
            }
            (c, _) => out.push(c),
        }
    }
    collapse_stars(&out)
}

/// `a-*.*.*` → `a-*`: one star for a run of date fields.
fn collapse_stars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for part in s.split_inclusive('*') {
        let trimmed = part.trim_start_matches(['.', '-', '_']);
        if out.ends_with('*') && trimmed == "*" {
            continue;
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn date_fields_become_one_wildcard() {
        assert_eq!(
            super::wildcard("esalert-history-%Y.%m.%d"),
            "esalert-history-*"
        );
        assert_eq!(super::wildcard("my-hist-%Y"), "my-hist-*");
        assert_eq!(super::wildcard("alerts"), "alerts");
        assert_eq!(
            super::collapse_stars("esalert-history-*.*.*"),
            "esalert-history-*"
        );
        assert_eq!(super::collapse_stars("h-*.*-x"), "h-*-x");
    }
}
