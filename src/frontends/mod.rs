//! Front ends: the file formats that compile to a [`Rule`].
//!
//! Each front end claims the files it reads and turns them into a rule
//! whose [`RuleBody`](crate::rule::RuleBody) does the format's own part of
//! a run. Adding a format is one file here plus one line in [`FRONT_ENDS`].

pub mod elastalert;
pub mod native;
pub mod watch;

use std::path::Path;

use serde_json::Value;

use crate::alert::LoadError;
use crate::condition::ScriptEngine;
use crate::rule::Rule;

/// A file format.
pub trait FrontEnd: Sync {
    /// Its name, for messages.
    fn name(&self) -> &'static str;
    /// The file extensions (besides `json`) whose files are this front
    /// end's alone, parsed by it from their text.
    fn extensions(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether this front end reads a JSON file with this top level.
    fn claims(&self, raw: &Value) -> bool;
    /// Validates and compiles the file; `text` is for positions. `raw` is
    /// the parsed JSON of a `.json` file, `Null` for a front end's own
    /// [`extensions`](Self::extensions).
    fn load(
        &self,
        name: &str,
        path: &Path,
        text: &str,
        raw: &Value,
        scripts: &ScriptEngine,
    ) -> Result<Rule, LoadError>;
}

/// Every front end, most specific first; the last one takes what is left.
pub static FRONT_ENDS: &[&dyn FrontEnd] = &[
    &watch::WatchFrontEnd,
    &elastalert::ElastAlertFrontEnd,
    &native::NativeFrontEnd,
];

/// The front end for a parsed JSON file.
pub fn for_json(raw: &Value) -> &'static dyn FrontEnd {
    FRONT_ENDS
        .iter()
        .copied()
        .find(|f| f.claims(raw))
        .unwrap_or(&native::NativeFrontEnd)
}

/// The front end that owns files with extension `ext` (not `json`).
pub fn for_extension(ext: &str) -> Option<&'static dyn FrontEnd> {
    FRONT_ENDS
        .iter()
        .copied()
        .find(|f| f.extensions().contains(&ext))
}

/// Whether a file name is a rule file some front end reads.
pub fn is_rule_file(file_name: &str) -> bool {
    match file_name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext == "json" || for_extension(ext).is_some(),
        _ => false,
    }
}
