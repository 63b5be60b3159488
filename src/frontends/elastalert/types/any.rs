//! `type: any`: every document in the window is a match.

use futures::future::BoxFuture;

use super::{Found, RuleType, TypeDef};
use crate::frontends::elastalert::Common;
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
            let (matches, found) = super::documents(c, cx).await?;
            Ok(Found { matches, ..found })
        })
    }

    fn fold_body(&self, c: &Common, cx: &EvalContext<'_>) -> Result<serde_json::Value, String> {
        Ok(crate::frontends::elastalert::query::hits_body(
            c,
            &c.first_window(cx),
        ))
    }
}
