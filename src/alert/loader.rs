//! Reading `queries/`: which files count, size and encoding limits, and
//! turning every kind of mistake into a `path:line:column: message`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::{LoadError, json_problem};
use super::locate::{Position, position_of};
use super::{Alert, valid_name};
use crate::condition::ScriptEngine;

/// Alert files larger than this are refused unread.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// The outcome of loading a directory: the good alerts and every bad file.
/// One bad file never stops the others.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Alerts that loaded, sorted by name.
    pub alerts: Vec<Alert>,
    /// Files that did not.
    pub errors: Vec<LoadError>,
}

/// Files in `queries/` that esalert ignores: hidden files and editors' temporaries.
fn ignored(file_name: &str) -> bool {
    file_name.starts_with('.')
        || file_name.ends_with('~')
        || file_name.ends_with(".swp")
        || file_name.ends_with(".swx")
        || file_name.ends_with(".tmp")
}

/// Lists the alert files of a directory, sorted.
pub fn alert_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let rd = std::fs::read_dir(dir).map_err(|source| LoadError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !ignored(name) && crate::frontends::is_rule_file(name)
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every alert file in `dir`.
pub fn load_dir(dir: &Path, engine: &ScriptEngine) -> Result<LoadReport, LoadError> {
    let mut report = LoadReport::default();
    let mut seen: std::collections::HashMap<String, PathBuf> = std::collections::HashMap::new();
    for path in alert_files(dir)? {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_owned();
        if let Some(first) = seen.get(&stem) {
            report.errors.push(LoadError::one(
                &path,
                None,
                format!(
                    "{} already defines the rule {stem:?}; rule names are file stems: rename one of them",
                    first.display()
                ),
            ));
            continue;
        }
        seen.insert(stem, path.clone());
        match load_file(dir, &path, engine) {
            Ok(a) => report.alerts.push(a),
            Err(e) => report.errors.push(e),
        }
    }
    Ok(report)
}

/// Loads `dir/<name>.json` (or the rule of that name in another format,
/// e.g. `dir/<name>.yaml`).
pub fn load_named(dir: &Path, name: &str, engine: &ScriptEngine) -> Result<Alert, LoadError> {
    let json = dir.join(format!("{name}.json"));
    let path = if json.exists() {
        json
    } else {
        crate::frontends::FRONT_ENDS
            .iter()
            .flat_map(|f| f.extensions())
            .map(|ext| dir.join(format!("{name}.{ext}")))
            .find(|p| p.exists())
            .unwrap_or(json)
    };
    if !path.exists() {
        return Err(LoadError::NotFound {
            name: name.into(),
            path,
        });
    }
    load_file(dir, &path, engine)
}

/// Why [`read_regular`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening, inspecting or reading failed.
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),
    /// A FIFO, device, socket or directory: reading it could block the
    /// daemon or never end.
    #[error("not a regular file (it is a {0}); only regular files are read")]
    NotRegular(&'static str),
    /// Over the size limit (also when the file grew while being read).
    #[error("file is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The size seen (at least `limit + 1`).
        size: u64,
        /// The limit.
        limit: u64,
    },
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "special file"
    }
}

/// Reads a file only if it is a regular file of at most `limit` bytes.
///
/// The type and size are checked on the open descriptor (so a file swapped
/// after a check is still caught); the open is non-blocking, so a FIFO is
/// refused instead of waiting for a writer; and at most `limit + 1` bytes
/// are read, so a file that grows meanwhile (or lies about its size, as
/// `/proc` files do) can't make the read unbounded.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular(kind_of(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > limit {
        return Err(ReadError::TooLarge { size: read, limit });
    }
    Ok(bytes)
}

/// Reads one file of `dir` with every check that comes before parsing: its
/// name, where a symlink points, its type and its size. Nothing is read
/// from a file that fails them.
pub fn read_alert_file(dir: &Path, path: &Path) -> Result<Vec<u8>, LoadError> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if !valid_name(stem) {
        return Err(LoadError::one(
            path,
            None,
            format!(
                "alert name {stem:?} is not allowed: rename the file to use only a-z, 0-9, '_' and '-'"
            ),
        ));
    }
    // Type first, without following a symlink: a FIFO or device is refused
    // here, before anything opens it.
    let link = std::fs::symlink_metadata(path)
        .map_err(|e| LoadError::one(path, None, format!("cannot read file: {e}")))?;
    if !link.file_type().is_file() && !link.file_type().is_symlink() {
        return Err(LoadError::one(
            path,
            None,
            ReadError::NotRegular(kind_of(link.file_type())).to_string(),
        ));
    }
    // A symlink may point anywhere; only follow it inside the queries directory.
    let real = std::fs::canonicalize(path)
        .map_err(|e| LoadError::one(path, None, format!("cannot read file: {e}")))?;
    let real_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    if !real.starts_with(&real_dir) {
        return Err(LoadError::one(
            path,
            None,
            format!(
                "symlink points outside the queries directory (to {}); copy the file in instead",
                real.display()
            ),
        ));
    }
    read_regular(&real, MAX_FILE_SIZE).map_err(|e| {
        let msg = match e {
            ReadError::TooLarge { size, .. } => format!(
                "file is {size} bytes, over the limit of {MAX_FILE_SIZE} bytes (1 MiB); alert files should be small"
            ),
            other => other.to_string(),
        };
        LoadError::one(path, None, msg)
    })
}

/// Reads and validates one file of `dir`.
pub fn load_file(dir: &Path, path: &Path, engine: &ScriptEngine) -> Result<Alert, LoadError> {
    let bytes = read_alert_file(dir, path)?;
    load_bytes(path, &bytes, engine)
}

/// Validates the content of one alert file, read by [`read_alert_file`].
pub fn load_bytes(path: &Path, bytes: &[u8], engine: &ScriptEngine) -> Result<Alert, LoadError> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or("");
            return Err(LoadError::one(
                path,
                Some(position_of(good, good.len())),
                "file is not valid UTF-8; save it as UTF-8",
            ));
        }
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match crate::frontends::for_extension(ext) {
        Some(f) => f.load(stem, path, text, &Value::Null, engine),
        None => parse_alert(stem, path, text, engine),
    }
}

/// Parses and validates alert file text. `path` is used only in messages.
pub fn parse_alert(
    name: &str,
    path: &Path,
    text: &str,
    engine: &ScriptEngine,
) -> Result<Alert, LoadError> {
    // Pass 1: the JSON itself, so that syntax errors point at the exact spot.
    let raw: Value = serde_json::from_str(text).map_err(|e| LoadError::Invalid {
        problems: vec![json_problem(path, &e, None)],
    })?;
    if !raw.is_object() {
        return Err(LoadError::one(
            path,
            Some(Position { line: 1, column: 1 }),
            "an alert file must be a JSON object with at least `index`, `body` and `message`",
        ));
    }
    crate::frontends::for_json(&raw).load(name, path, text, &raw, engine)
}
