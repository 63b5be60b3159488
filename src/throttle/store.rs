//! Persistence of the store: an exclusive lock, crash-safe atomic writes,
//! and refusing (never silently replacing) a store that can't be read.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// Another process holds the store file itself: its lock file was
    /// deleted (or replaced) while it ran.
    #[error(
        "{} is in use by another esalert process (it holds a lock on the store itself; the lock file {} was deleted or replaced while it ran); stop it first, or give this one its own --state",
        path.display(), lock.display()
    )]
    HeldElsewhere {
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
///
/// Two locks prove ownership, both `flock`s held for the life of the store:
/// one on `<store>.lock` (whose name says what it is) and one on the store
/// file's current inode. A lock file can be deleted from under a running
/// daemon, after which a second one could lock a new file of the same name;
/// the store file can't be deleted that way without destroying the state
/// itself, and every write locks the new inode before renaming it into
/// place, so the current store is always locked. A second process is
/// refused by whichever of the two it meets held.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    own: Arc<Mutex<Ownership>>,
    /// The current content.
    pub data: StoreFile,
}

/// The descriptors whose locks make this process the store's owner.
#[derive(Debug)]
struct Ownership {
    lock_path: PathBuf,
    lock: File,
    /// The store's current inode, locked; `None` until it first exists.
    store: Option<File>,
}

/// Writes a store's content while keeping its locks: cheap to clone, and
/// usable from a blocking thread.
#[derive(Debug, Clone)]
pub struct StoreWriter {
    path: PathBuf,
    own: Arc<Mutex<Ownership>>,
}

/// Files esalert creates hold alert data: owner-only.
const PRIVATE: u32 = 0o600;

fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(PRIVATE)
        .open(path)
        .map_err(io(path, "cannot open lock file"))
}

/// `Ok(false)` when another process holds the lock.
fn try_lock(f: &File, path: &Path) -> Result<bool, StoreError> {
    match f.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(io(path, "cannot lock")(e)),
    }
}

impl Ownership {
    /// Before every write: is `<store>.lock` still the file we locked? If it
    /// was deleted or replaced, take the new one (logging it), or fail if
    /// another process already holds it.
    fn recheck(&mut self, store: &Path) -> Result<(), StoreError> {
        let held = self
            .lock
            .metadata()
            .map_err(io(&self.lock_path, "cannot inspect lock file"))?;
        match std::fs::metadata(&self.lock_path) {
            Ok(now) if same_file(&now, &held) => return Ok(()),
            Ok(_) | Err(_) => {}
        }
        // A missing directory is a failed write, said once by the writer;
        // the lock is taken again when the directory is back.
        if self
            .lock_path
            .parent()
            .is_some_and(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            return Err(io(&self.lock_path, "cannot lock")(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the store's directory is missing",
            )));
        }
        tracing::warn!(
            event = "lock_file_replaced",
            lock = %self.lock_path.display(),
            "the store's lock file was deleted or replaced while esalert ran; locking it again (the store file itself stayed locked)"
        );
        let fresh = open_lock_file(&self.lock_path)?;
        if !try_lock(&fresh, &self.lock_path)? {
            return Err(StoreError::Locked {
                path: store.to_owned(),
                lock: self.lock_path.clone(),
            });
        }
        self.lock = fresh;
        Ok(())
    }
}

impl StoreWriter {
    /// Writes `bytes` as the store (see [`write_atomic`]), first checking
    /// the lock file, and moves the store lock to the new inode.
    pub fn write(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.write_with(bytes, |_| Ok(()))
    }

    fn write_with(
        &self,
        bytes: &[u8],
        before_rename: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        own.recheck(&self.path)?;
        let locked = write_atomic_inner(&self.path, bytes, before_rename, true)?;
        // The old inode's lock goes with its descriptor; the new one is held.
        own.store = locked;
        Ok(())
    }
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
        let lock = open_lock_file(&lock_file)?;
        if !try_lock(&lock, &lock_file)? {
            return Err(StoreError::Locked {
                path: path.to_owned(),
                lock: lock_file,
            });
        }
        let (store_fd, data, migrated) = match Self::lock_current(path, &lock_file)? {
            Some((f, bytes)) => {
                let (data, migrated) = Self::parse_migrating(path, &bytes)?;
                if migrated {
                    // Keep the old file: a downgrade, or a look at what was
                    // there, needs it.
                    let mut backup = path.as_os_str().to_owned();
                    backup.push(".v1.bak");
                    write_atomic(Path::new(&backup), &bytes, |_| Ok(()))?;
                    tracing::info!(event = "store_migrated", from = 1, to = VERSION, backup = %Path::new(&backup).display());
                }
                (Some(f), data, migrated)
            }
            None => (None, StoreFile::default(), false),
        };
        let exists = store_fd.is_some();
        let mut store = Store {
            path: path.to_owned(),
            own: Arc::new(Mutex::new(Ownership {
                lock_path: lock_file,
                lock,
                store: store_fd,
            })),
            data,
        };
        if migrated || !exists {
            store.save()?;
        }
        Ok(store)
    }

    /// Locks the store file's current inode and reads it through the locked
    /// descriptor; `None` when there is no store yet. A writer renames a
    /// new, already locked inode into place, so after locking, the path must
    /// still name the inode we hold, else we look again.
    fn lock_current(path: &Path, lock_file: &Path) -> Result<Option<(File, Vec<u8>)>, StoreError> {
        use std::io::Read;
        for _ in 0..100 {
            let mut f = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io(path, "cannot read")(e)),
            };
            if !try_lock(&f, path)? {
                return Err(StoreError::HeldElsewhere {
                    path: path.to_owned(),
                    lock: lock_file.to_owned(),
                });
            }
            let held = f.metadata().map_err(io(path, "cannot read"))?;
            match std::fs::metadata(path) {
                Ok(now) if same_file(&now, &held) => {
                    let mut bytes = Vec::new();
                    f.read_to_end(&mut bytes).map_err(io(path, "cannot read"))?;
                    return Ok(Some((f, bytes)));
                }
                _ => continue,
            }
        }
        Err(io(path, "cannot lock")(std::io::Error::other(
            "the store file keeps being replaced",
        )))
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
        self.writer().write_with(&self.snapshot(), before_rename)
    }

    /// A handle that writes this store, keeping its locks.
    pub fn writer(&self) -> StoreWriter {
        StoreWriter {
            path: self.path.clone(),
            own: self.own.clone(),
        }
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
    write_atomic_inner(path, bytes, before_rename, false).map(|_| ())
}

/// [`write_atomic`]; with `lock`, the new file is locked before it is
/// renamed into place and its descriptor returned, so that the file at
/// `path` is never unlocked. New files are created owner-only (0600).
fn write_atomic_inner(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(&Path) -> std::io::Result<()>,
    lock: bool,
) -> Result<Option<File>, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".tmp-{}", std::process::id()));
        PathBuf::from(s)
    };
    let f = {
        // A leftover from a crash may have other permissions: start afresh.
        let _ = std::fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE)
            .open(&tmp)
            .map_err(io(&tmp, "cannot create temporary file"))?;
        if lock && !try_lock(&f, &tmp)? {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&tmp, "cannot lock")(std::io::Error::other(
                "another process holds the new file",
            )));
        }
        f.write_all(bytes).map_err(io(&tmp, "cannot write"))?;
        f.sync_all().map_err(io(&tmp, "cannot fsync"))?;
        f
    };
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
    Ok(lock.then_some(f))
}
