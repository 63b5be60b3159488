//! Persistence of the store: an exclusive lock, crash-safe atomic writes,
//! and refusing (never silently replacing) a store that can't be read.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{StoreFile, VERSION};

/// Why the store can't be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds `<store>.lock`.
    #[error(
        "{} is in use by another esalert process (lock {} is held); stop it first, or give this one its own --state",
        path.display(), lock.display()
    )]
    Locked {
        /// The store.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The store exists but does not parse. esalert won't replace it with an
    /// empty one: that would re-fire every alert at once.
    #[error(
        "{}:{line}:{column}: the throttle store is corrupt: {reason}; fix or restore it (an empty store is {{\"version\": 2, \"alerts\": {{}}}}, but that forgets all throttles)",
        path.display()
    )]
    Corrupt {
        /// The store.
        path: PathBuf,
        /// Where parsing failed.
        line: usize,
        /// Where parsing failed.
        column: usize,
        /// The parser's message.
        reason: String,
    },
    /// A store from a newer esalert.
    #[error("{}: store version {found} is not supported (this esalert writes version {VERSION}); upgrade esalert", path.display())]
    Version {
        /// The store.
        path: PathBuf,
        /// The version in the file.
        found: u32,
    },
    /// Reading or writing failed.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The open, locked store.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    /// Held for the life of the store: the lock is released when it closes.
    _lock: File,
    /// The current content.
    pub data: StoreFile,
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// The lock file of a store: `<store>.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

impl Store {
    /// Opens (creating if missing) and locks the store.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir, "cannot create directory"))?;
        }
        let lock_file = lock_path(path);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_file)
            .map_err(io(&lock_file, "cannot open lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: path.to_owned(),
                    lock: lock_file,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io(&lock_file, "cannot lock")(e));
            }
        }
        let (data, migrated) = match std::fs::read(path) {
            Ok(bytes) => {
                let (data, migrated) = Self::parse_migrating(path, &bytes)?;
                if migrated {
                    // Keep the old file: a downgrade, or a look at what was
                    // there, needs it.
                    let mut backup = path.as_os_str().to_owned();
                    backup.push(".v1.bak");
                    write_atomic(Path::new(&backup), &bytes, |_| Ok(()))?;
                    tracing::info!(event = "store_migrated", from = 1, to = VERSION, backup = %Path::new(&backup).display());
                }
                (data, migrated)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (StoreFile::default(), false),
            Err(e) => return Err(io(path, "cannot read")(e)),
        };
        let mut store = Store {
            path: path.to_owned(),
            _lock: lock,
            data,
        };
        if migrated || !path.exists() {
            store.save()?;
        }
        Ok(store)
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<StoreFile, StoreError> {
        Self::parse_migrating(path, bytes).map(|(d, _)| d)
    }

    /// Parses the store, upgrading an older format; says whether it did.
    fn parse_migrating(path: &Path, bytes: &[u8]) -> Result<(StoreFile, bool), StoreError> {
        let corrupt = |e: serde_json::Error| {
            let full = e.to_string();
            let reason = full
                .rfind(" at line ")
                .map_or(&full[..], |i| &full[..i])
                .to_owned();
            StoreError::Corrupt {
                path: path.to_owned(),
                line: e.line(),
                column: e.column(),
                reason,
            }
        };
        let mut doc: serde_json::Value = serde_json::from_slice(bytes).map_err(corrupt)?;
        let migrated = super::migrate(&mut doc);
        let found = doc.get("version").and_then(serde_json::Value::as_u64);
        if let Some(found) = found.filter(|v| *v != u64::from(VERSION)) {
            return Err(StoreError::Version {
                path: path.to_owned(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
            });
        }
        let data: StoreFile = if migrated {
            // An old file that doesn't parse: report the first problem in
            // the text, where it has a line and column.
            serde_json::from_value(doc).map_err(|e| {
                serde_json::from_slice::<StoreFile>(bytes)
                    .err()
                    .map_or_else(|| corrupt(e), corrupt)
            })?
        } else {
            // Parse the text again so errors keep their line and column.
            serde_json::from_slice(bytes).map_err(corrupt)?
        };
        Ok((data, migrated))
    }

    /// The store's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the store atomically: see [`write_atomic`].
    pub fn save(&mut self) -> Result<(), StoreError> {
        self.save_with(|_| Ok(()))
    }

    /// [`save`](Self::save) with a hook between the write and the rename;
    /// tests use it to fail there.
    pub fn save_with(
        &mut self,
        before_rename: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        write_atomic(&self.path, &self.snapshot(), before_rename)
    }

    /// The store's content as written to disk.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(&self.data).expect("store serializes");
        text.push(b'\n');
        text
    }

    /// Reads a store without locking it (for `status`, which only looks).
    pub fn read_only(path: &Path) -> Result<StoreFile, StoreError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreFile::default()),
            Err(e) => Err(io(path, "cannot read")(e)),
        }
    }
}

/// Writes a temporary file in the same directory, fsyncs it, renames it over
/// `path` and fsyncs the directory, so that a crash at any instant leaves
/// either the old file or the new one. `before_rename` runs between the write
/// and the rename.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let tmp = {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".tmp-{}", std::process::id()));
        PathBuf::from(s)
    };
    {
        let mut f = File::create(&tmp).map_err(io(&tmp, "cannot create temporary file"))?;
        f.write_all(bytes).map_err(io(&tmp, "cannot write"))?;
        f.sync_all().map_err(io(&tmp, "cannot fsync"))?;
    }
    if let Err(e) = before_rename(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path, "write interrupted")(e));
    }
    std::fs::rename(&tmp, path).map_err(io(path, "cannot rename into place"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    if let Ok(d) = File::open(&dir) {
        d.sync_all().map_err(io(&dir, "cannot fsync directory"))?;
    }
    Ok(())
}
