//! Documents by id, for state shared through the cluster: real-time `GET`
//! and `_mget`, and writes that either create (`op_type=create`) or replace
//! only the version read (`if_seq_no` + `if_primary_term`). Nothing here
//! reads through `_search`, whose results lag behind writes by a refresh.

use percent_encoding::utf8_percent_encode;
use serde_json::{Value, json};

use super::{EsClient, INDEX, SearchError};

/// The version of a document as the cluster numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocVersion {
    /// `_seq_no`.
    pub seq_no: i64,
    /// `_primary_term`.
    pub primary_term: i64,
}

/// A document read by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// `_source`.
    pub source: Value,
    /// Its version.
    pub version: DocVersion,
}

/// The condition of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// Only if no document has the id.
    Create,
    /// Only if the document is still at this version.
    Match(DocVersion),
}

/// What a conditional write came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written; the document's new version.
    Done(DocVersion),
    /// The condition failed (409): someone else wrote first.
    Conflict,
}

fn version_of(v: &Value) -> Option<DocVersion> {
    Some(DocVersion {
        seq_no: v["_seq_no"].as_i64()?,
        primary_term: v["_primary_term"].as_i64()?,
    })
}

fn doc_of(v: &Value) -> Option<Doc> {
    if v["found"].as_bool() != Some(true) {
        return None;
    }
    Some(Doc {
        source: v.get("_source").cloned().unwrap_or(Value::Null),
        version: version_of(v)?,
    })
}

fn not_json(detail: &str, v: &Value) -> SearchError {
    SearchError::NotJson {
        status: 200,
        detail: detail.to_owned(),
        snippet: v.to_string().chars().take(200).collect(),
    }
}

impl EsClient {
    fn doc_url(&self, index: &str, tail: &str) -> String {
        format!("{}/{}/{tail}", self.base, utf8_percent_encode(index, INDEX))
    }

    /// Creates `index` for shared state unless it exists: one shard,
    /// nothing indexed but what finds old fire documents to delete
    /// (documents are only ever read by id). An index made before those
    /// fields were indexed gets them added (if the user may; else the
    /// cleanup finds nothing, and nothing else changes).
    pub async fn ensure_state_index(&self, index: &str) -> Result<(), SearchError> {
        let properties = json!({"rule": {"type": "keyword"}, "matched_at": {"type": "date"}});
        let body = json!({
            "settings": {"number_of_shards": 1, "auto_expand_replicas": "0-1"},
            "mappings": {"dynamic": false, "properties": properties}
        });
        let url = format!("{}/{}", self.base, utf8_percent_encode(index, INDEX));
        match self.request(reqwest::Method::PUT, &url, &[], &body).await {
            Ok(_) => Ok(()),
            Err(SearchError::Request { kind, .. })
                if kind == "resource_already_exists_exception" =>
            {
                let url = self.doc_url(index, "_mapping");
                let body = json!({"properties": properties});
                if let Err(e) = self.request(reqwest::Method::PUT, &url, &[], &body).await {
                    // Only the cleanup of old fire documents needs it.
                    tracing::warn!(event = "state_mapping_not_updated", index, error = %e,
                        "old fire documents in this index are not cleaned up; give the user `manage` on it");
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes up to `max` fire documents of `rules` whose match is older
    /// than `before` (RFC 3339), each only at the version found; returns
    /// how many. Cleanup only: it finds them through the search index, and
    /// what a refresh has not shown yet is left for the next time. (Not
    /// `_delete_by_query`: a node without the reindex module lacks it.)
    pub async fn delete_old_fires(
        &self,
        index: &str,
        rules: &[String],
        before: &str,
        max: usize,
    ) -> Result<u64, SearchError> {
        let url = self.doc_url(index, "_search");
        let body = json!({"size": max, "_source": false, "seq_no_primary_term": true,
        "query": {"bool": {"filter": [
            {"terms": {"rule": rules}},
            {"range": {"matched_at": {"lt": before}}}
        ]}}});
        let r = self
            .request(reqwest::Method::POST, &url, &[], &body)
            .await?;
        let mut nd = String::new();
        let mut n = 0u64;
        for hit in r.response["hits"]["hits"].as_array().into_iter().flatten() {
            let (Some(id), Some(v)) = (hit["_id"].as_str(), version_of(hit)) else {
                continue;
            };
            let meta = json!({"delete": {"_index": index, "_id": id,
                "if_seq_no": v.seq_no, "if_primary_term": v.primary_term}});
            nd.push_str(&meta.to_string());
            nd.push('\n');
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        let r = self.post_bulk(nd).await?;
        Ok(r.response["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["delete"]["status"].as_u64() == Some(200))
            .count() as u64)
    }

    /// Reads documents by id, in real time; `None` for each one missing.
    pub async fn mget_docs(
        &self,
        index: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Doc>>, SearchError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let url = self.doc_url(index, "_mget");
        let params = [("realtime".to_owned(), "true".to_owned())];
        let r = self
            .request(reqwest::Method::POST, &url, &params, &json!({"ids": ids}))
            .await?;
        let docs = r.response["docs"]
            .as_array()
            .filter(|d| d.len() == ids.len())
            .ok_or_else(|| not_json("_mget answer without one doc per id", &r.response))?;
        Ok(docs.iter().map(doc_of).collect())
    }

    /// Writes documents, each under its own condition, with one `_bulk`
    /// request; one result per document, in order. A document whose write
    /// failed otherwise than by conflict fails the whole call (the caller
    /// treats it as not done).
    pub async fn put_docs(
        &self,
        index: &str,
        docs: &[(String, Value, Cond)],
    ) -> Result<Vec<Written>, SearchError> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let mut nd = String::new();
        for (id, source, cond) in docs {
            let meta = match cond {
                Cond::Create => json!({"create": {"_index": index, "_id": id}}),
                Cond::Match(v) => json!({"index": {"_index": index, "_id": id,
                    "if_seq_no": v.seq_no, "if_primary_term": v.primary_term}}),
            };
            nd.push_str(&meta.to_string());
            nd.push('\n');
            nd.push_str(&source.to_string());
            nd.push('\n');
        }
        let r = self.post_bulk(nd).await?;
        let items = r.response["items"]
            .as_array()
            .filter(|i| i.len() == docs.len())
            .ok_or_else(|| not_json("_bulk answer without one item per document", &r.response))?;
        items
            .iter()
            .map(|item| {
                let res = item
                    .as_object()
                    .and_then(|o| o.values().next())
                    .ok_or_else(|| not_json("_bulk item without a result", item))?;
                match res["status"].as_u64() {
                    Some(409) => Ok(Written::Conflict),
                    Some(200 | 201) => version_of(res)
                        .map(Written::Done)
                        .ok_or_else(|| not_json("_bulk item without _seq_no", res)),
                    Some(s @ 429) | Some(s @ 500..=599) => Err(SearchError::Server {
                        status: u16::try_from(s).unwrap_or(500),
                        reason: res["error"]["reason"].as_str().unwrap_or("").to_owned(),
                    }),
                    _ => Err(SearchError::Request {
                        status: res["status"]
                            .as_u64()
                            .and_then(|s| u16::try_from(s).ok())
                            .unwrap_or(0),
                        kind: res["error"]["type"]
                            .as_str()
                            .unwrap_or("unknown")
                            .to_owned(),
                        reason: res["error"]["reason"].as_str().unwrap_or("").to_owned(),
                    }),
                }
            })
            .collect()
    }
}
