//! `always` and `never`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::{Check, CompileError, ScriptEngine, ScriptError, Verdict};

/// Met or not, whatever the response.
#[derive(Debug)]
pub(super) struct Constant(pub bool);

impl Check for Constant {
    fn check(
        &self,
        _: &ScriptEngine,
        _: super::Scope<'_>,
        _: DateTime<Utc>,
    ) -> Result<Verdict, ScriptError> {
        Ok(Verdict::of(self.0))
    }

    fn counts_only(&self) -> bool {
        true
    }
}

/// `{}`: the only body `always` and `never` accept.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn empty(body: &Value) -> Result<(), CompileError> {
    Empty::deserialize(body)
        .map(|_| ())
        .map_err(|e| CompileError::Invalid(format!("{e}; write it as {{}}")))
}

pub(super) fn always(
    body: &Value,
    _: Option<&ScriptEngine>,
) -> Result<Arc<dyn Check>, CompileError> {
    empty(body)?;
    Ok(Arc::new(Constant(true)))
}

pub(super) fn never(
    body: &Value,
    _: Option<&ScriptEngine>,
) -> Result<Arc<dyn Check>, CompileError> {
    empty(body)?;
    Ok(Arc::new(Constant(false)))
}
