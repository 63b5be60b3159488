//! What can be wrong with a rule file: every problem with its position.

use std::fmt;
use std::path::{Path, PathBuf};

use super::locate::Position;

/// One problem in one file, printed as `path:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// Where in it, when a position applies.
    pub position: Option<Position>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                p.line,
                p.column,
                self.message
            ),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// Why an alert file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The queries directory itself is unreadable.
    #[error("cannot read queries directory {}: {source}; check --queries", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No file for the alert asked for.
    #[error("no alert named {name:?}: {} does not exist", path.display())]
    NotFound {
        /// The name asked for.
        name: String,
        /// The file looked for.
        path: PathBuf,
    },
    /// The file has problems; there is at least one.
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl LoadError {
    pub(crate) fn one(
        path: &Path,
        position: Option<Position>,
        message: impl Into<String>,
    ) -> LoadError {
        LoadError::Invalid {
            problems: vec![Problem {
                path: path.to_owned(),
                position,
                message: message.into(),
            }],
        }
    }

    /// The problems, one per line, as `check` prints them.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            LoadError::Invalid { problems } => problems.clone(),
            LoadError::Dir { path, .. } | LoadError::NotFound { path, .. } => vec![Problem {
                path: path.clone(),
                position: None,
                message: self.to_string(),
            }],
        }
    }
}

/// Splits serde_json's "message at line L column C" into its parts.
pub(crate) fn json_problem(path: &Path, e: &serde_json::Error, at: Option<&str>) -> Problem {
    let full = e.to_string();
    let msg = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => &full[..],
    };
    let message = match at {
        Some(p) if !p.is_empty() && p != "." => format!("{msg} (at `{p}`)"),
        _ => msg.to_owned(),
    };
    Problem {
        path: path.to_owned(),
        position: (e.line() > 0).then_some(Position {
            line: e.line(),
            column: e.column(),
        }),
        message,
    }
}
