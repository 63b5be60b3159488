//! Watcher's `index` action: one document, or a `_doc` array in one bulk request.

use futures::future::BoxFuture;

use super::{Message, Sink, SinkError};
use crate::search::EsClient;

pub(super) struct IndexSink {
    es: EsClient,
}

impl IndexSink {
    pub(super) fn new(es: EsClient) -> Self {
        IndexSink { es }
    }
}

impl Sink for IndexSink {
    fn name(&self) -> &'static str {
        "index"
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let Message::Index {
                index,
                doc_id,
                docs,
                bulk,
            } = m
            else {
                return Err(SinkError::permanent("index", "not an index message"));
            };
            let r = match (bulk, docs.as_slice()) {
                (false, [doc]) => self.es.index_doc(index, doc_id.as_deref(), doc).await,
                _ => self.es.bulk_index(index, docs).await,
            };
            r.map(|_| ()).map_err(|e| {
                if e.is_transient() {
                    SinkError::transient("index", e.to_string())
                } else {
                    SinkError::permanent("index", e.to_string())
                }
            })
        })
    }
}
