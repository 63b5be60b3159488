//! `type: any`: every document in the window is a match.

use futures::future::BoxFuture;

use super::{Found, Match, RuleType, TypeDef};
use crate::frontends::elastalert::{Common, query};
use crate::rule::{EvalContext, EvalError};

pub static TYPE: TypeDef = TypeDef {
    name: "any",
    keys: &[],
    build: |_, _| Some(Box::new(Any)),
};

#[derive(Debug)]
struct Any;

impl RuleType for Any {
    fn evaluate<'a>(
        &'a self,
        c: &'a Common,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Found, EvalError>> {
        Box::pin(async move {
            let h = query::hits(c, cx, &c.id, &cx.window).await?;
            let matches = h
                .docs
                .into_iter()
                .map(|(time, doc)| Match {
                    key: c.key_of(&doc),
                    time,
                    doc: c.as_match(doc, time),
                })
                .collect();
            Ok(Found {
                matches,
                hits: h.total,
                partial: h.partial,
                took_ms: h.took_ms,
                memory: None,
            })
        })
    }
}
