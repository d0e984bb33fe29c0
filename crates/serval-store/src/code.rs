//! Code packages: content-addressed storage and safe unpacking of uploaded zips.
//!
//! For: turning the bytes of a `ZipFile` upload into `<data_dir>/code/<hex>.zip` plus a
//! validated, read-only tree `<data_dir>/code/<hex>/`, once per SHA-256. Every check (size
//! limits, path traversal, symlink escapes, zip bombs, entry count, corruption) runs while
//! unpacking into a temporary directory inside `code/`; the tree becomes visible under its
//! final name only by an atomic `rename` once it is complete and valid, so concurrent uploads
//! of the same zip are safe and a function can never see a half-unpacked package.
//!
//! Garbage collection: `collect_unused_code(grace)` removes the packages (zip, tree and
//! `code_packages` row) that no stored function's `code_sha256_hex` references and whose files
//! were last touched more than `grace` ago. The grace covers the window between an upload and
//! the CreateFunction / UpdateFunctionCode that stores a reference to it: a new upload's files
//! are fresh, and re-uploading a package that already exists touches its zip. A lock shared
//! with `put_code` makes "still old? then remove" atomic against such a touch or the final
//! renames of an upload, so a package `put_code` returned less than `grace` ago is never
//! removed, whatever the interleaving. The tree is
//! first renamed to a temporary name (so it disappears atomically and a crash mid-removal
//! leaves only a temporary that `Store::open` clears), then made writable and removed.
//! Environments still running replaced code use its tree in place: the caller names such
//! packages with `collect_unused_code_except`.
//!
//! Not for: deciding when to collect (the caller runs it periodically, from
//! `spawn_blocking`), layers, or S3 uploads.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rusqlite::{params, OptionalExtension};
use serval_model::limits::{UNZIPPED_CODE_MAX_BYTES, ZIPPED_CODE_MAX_BYTES};
use sha2::{Digest, Sha256};
use zip::result::ZipError;
use zip::ZipArchive;

use crate::{now_ms, CodeError, Store, StoreError};

/// Prefix of the temporary files and directories an upload works in, inside `code/`.
const TEMP_PREFIX: &str = ".tmp-";
/// Prefix of a package tree being removed by garbage collection; a `TEMP_PREFIX` name, so
/// `Store::open` clears what a crash leaves behind.
const GC_PREFIX: &str = ".tmp-gc-";
/// Longest symlink target Serval accepts, in bytes.
const SYMLINK_TARGET_MAX_BYTES: u64 = 4096;
/// Buffer used to stream an entry out of the zip.
const COPY_BUFFER_BYTES: usize = 64 * 1024;

/// A stored code package, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    /// Lowercase hex SHA-256 of the zip; the key for `code_dir` and `code_zip_path`.
    pub sha256_hex: String,
    /// Base64 of the raw SHA-256 digest: AWS's `CodeSha256`.
    pub sha256_base64: String,
    /// Size of the zip in bytes: AWS's `CodeSize`.
    pub zip_size: u64,
    /// Total size of the unpacked regular files in bytes.
    pub unzipped_size: u64,
}

/// The limits a code upload is checked against. `Default` is AWS Lambda's quotas; tests
/// inject smaller ones through `Store::put_code_with_limits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeLimits {
    /// Largest zip accepted (AWS: 50 MB for a direct upload).
    pub zipped_max_bytes: u64,
    /// Largest total of unpacked file sizes, declared or actual (AWS: 250 MB).
    pub unzipped_max_bytes: u64,
    /// Most entries (files, directories, symlinks) in one zip.
    pub max_entries: usize,
    /// An entry that expands more than this many times its compressed size ...
    pub max_compression_ratio: u64,
    /// ... and to more than this many bytes is treated as a zip bomb.
    pub ratio_min_bytes: u64,
}

impl Default for CodeLimits {
    fn default() -> Self {
        CodeLimits {
            zipped_max_bytes: ZIPPED_CODE_MAX_BYTES,
            unzipped_max_bytes: UNZIPPED_CODE_MAX_BYTES,
            max_entries: 100_000,
            max_compression_ratio: 1000,
            ratio_min_bytes: 1024 * 1024,
        }
    }
}

impl Store {
    /// Stores a code package under AWS Lambda's limits; see `put_code_with_limits`.
    pub fn put_code(&self, zip: &[u8]) -> Result<CodeInfo, CodeError> {
        self.put_code_with_limits(zip, &CodeLimits::default())
    }

    /// Validates and stores a code package, returning its hashes and sizes.
    ///
    /// Identical bytes share storage: if the package's tree already exists, nothing is
    /// unpacked again. Otherwise the zip is unpacked into a temporary directory, checked entry
    /// by entry while streaming, made read-only (files `0444`, or `0555` when the zip marks
    /// them executable; directories `0555`) and renamed into place atomically.
    pub fn put_code_with_limits(
        &self,
        zip: &[u8],
        limits: &CodeLimits,
    ) -> Result<CodeInfo, CodeError> {
        let zip_size = zip.len() as u64;
        if zip_size > limits.zipped_max_bytes {
            return Err(CodeError::TooLarge {
                size: zip_size,
                limit: limits.zipped_max_bytes,
            });
        }
        let digest = Sha256::digest(zip);
        let sha256_hex = hex(&digest);
        let sha256_base64 = STANDARD.encode(digest);
        let root = &self.inner.code_root;
        let final_dir = self.code_dir(&sha256_hex);
        let zip_path = self.code_zip_path(&sha256_hex);
        let io_err = |operation: &'static str, path: &Path| {
            let path = path.to_owned();
            let sha256_hex = sha256_hex.clone();
            move |source| CodeError::Io {
                operation,
                path,
                sha256_hex,
                source,
            }
        };

        if self.reuse_existing(&final_dir, &zip_path, &sha256_hex)? {
            let unzipped_size = match self.recorded_unzipped_size(&sha256_hex) {
                Some(size) => size,
                None => tree_size(&final_dir).map_err(io_err("measure", &final_dir))?,
            };
            let info = CodeInfo {
                sha256_hex: sha256_hex.clone(),
                sha256_base64,
                zip_size,
                unzipped_size,
            };
            self.record_code(&info)?;
            return Ok(info);
        }

        let unique = uuid::Uuid::new_v4().simple().to_string();
        let temp = TempPath::new(root.join(format!("{TEMP_PREFIX}{sha256_hex}-{unique}")));
        fs::create_dir(&temp.path).map_err(io_err("create directory", &temp.path))?;
        let unzipped_size = unpack(zip, &temp.path, limits, &sha256_hex)?;
        make_read_only(&temp.path).map_err(io_err("make read-only", &temp.path))?;

        // The zip first: once the tree is visible under its final name, the zip exists too.
        let temp_zip = TempPath::new(root.join(format!("{TEMP_PREFIX}{unique}.zip")));
        write_file_synced(&temp_zip.path, zip).map_err(io_err("write", &temp_zip.path))?;
        // Both renames under the code lock, so garbage collection never removes one half of a
        // package as it appears.
        let code_lock = self.code_lock();
        fs::rename(&temp_zip.path, &zip_path).map_err(io_err("rename", &zip_path))?;
        temp_zip.keep();

        match fs::rename(&temp.path, &final_dir) {
            Ok(()) => temp.keep(),
            // A concurrent upload of the same zip won the race; its tree is identical, and
            // ours is removed when `temp` drops.
            Err(_) if is_real_dir(&final_dir) => {
                tracing::debug!(sha256 = %sha256_hex, "store.put_code lost a benign race");
            }
            Err(source) => return Err(io_err("rename", &final_dir)(source)),
        }
        drop(code_lock);
        let info = CodeInfo {
            sha256_hex,
            sha256_base64,
            zip_size,
            unzipped_size,
        };
        self.record_code(&info)?;
        tracing::info!(sha256 = %info.sha256_hex, zip_size, unzipped_size, "store.put_code");
        Ok(info)
    }

    /// The unpacked, read-only tree of a package. A string that is not a SHA-256 in lowercase
    /// hex yields a path that never exists, so it cannot name anything outside `code/`.
    pub fn code_dir(&self, sha256_hex: &str) -> PathBuf {
        if is_sha256_hex(sha256_hex) {
            self.inner.code_root.join(sha256_hex)
        } else {
            self.inner.code_root.join(".invalid-sha256")
        }
    }

    /// The zip of a package as uploaded; same rule as `code_dir` for bad hashes.
    pub fn code_zip_path(&self, sha256_hex: &str) -> PathBuf {
        if is_sha256_hex(sha256_hex) {
            self.inner.code_root.join(format!("{sha256_hex}.zip"))
        } else {
            self.inner.code_root.join(".invalid-sha256.zip")
        }
    }

    /// What is known of a stored package, or `None` if it is not (completely) stored.
    pub fn code_info(&self, sha256_hex: &str) -> Result<Option<CodeInfo>, StoreError> {
        let dir = self.code_dir(sha256_hex);
        let zip_path = self.code_zip_path(sha256_hex);
        if !is_real_dir(&dir) {
            return Ok(None);
        }
        let zip_size = match fs::metadata(&zip_path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    operation: "stat",
                    path: zip_path,
                    source,
                })
            }
        };
        let unzipped_size = match self.recorded_unzipped_size(sha256_hex) {
            Some(size) => size,
            None => tree_size(&dir).map_err(|source| StoreError::Io {
                operation: "measure",
                path: dir.clone(),
                source,
            })?,
        };
        let digest = decode_hex(sha256_hex).unwrap_or_default();
        Ok(Some(CodeInfo {
            sha256_hex: sha256_hex.to_owned(),
            sha256_base64: STANDARD.encode(digest),
            zip_size,
            unzipped_size,
        }))
    }

    /// Whether the package is already stored; if so, touches its zip (under the code lock)
    /// so garbage collection gives it a fresh grace period before a function references it.
    fn reuse_existing(
        &self,
        final_dir: &Path,
        zip_path: &Path,
        sha256_hex: &str,
    ) -> Result<bool, CodeError> {
        let _code_lock = self.code_lock();
        if !(is_real_dir(final_dir) && zip_path.is_file()) {
            return Ok(false);
        }
        fs::File::open(zip_path)
            .and_then(|f| f.set_modified(SystemTime::now()))
            .map_err(|source| CodeError::Io {
                operation: "touch",
                path: zip_path.to_owned(),
                sha256_hex: sha256_hex.to_owned(),
                source,
            })?;
        Ok(true)
    }

    /// Removes every code package that no stored function references and whose files (zip
    /// or tree) were modified more than `grace` ago; see the module header for why the grace
    /// makes this safe against a concurrent `put_code`. Returns the bytes freed: zip sizes
    /// plus unpacked file sizes of the packages removed.
    ///
    /// `grace` should exceed the longest plausible time between an upload and the request
    /// that stores a function referencing it (10 minutes is ample). Packages that cannot be
    /// inspected or removed are skipped with a warning; only failing to read the functions'
    /// references or to list `code/` is an error, and then nothing is removed.
    pub fn collect_unused_code(&self, grace: Duration) -> Result<u64, StoreError> {
        self.collect_unused_code_except(grace, &HashSet::new())
    }

    /// `collect_unused_code`, also keeping the packages in `in_use` (lowercase hex SHA-256):
    /// those whose trees environments still run from after their function's code was replaced.
    pub fn collect_unused_code_except(
        &self,
        grace: Duration,
        in_use: &HashSet<String>,
    ) -> Result<u64, StoreError> {
        let root = &self.inner.code_root;
        let mut removed: Vec<(String, Option<PathBuf>, u64)> = Vec::new();
        {
            let _code_lock = self.code_lock();
            // `$LATEST` and every published version keep their package.
            let referenced: HashSet<String> = self
                .all_functions()?
                .into_iter()
                .chain(self.all_versions()?)
                .map(|f| f.code_sha256_hex)
                .collect();
            let entries = fs::read_dir(root).map_err(|source| StoreError::Io {
                operation: "list",
                path: root.clone(),
                source,
            })?;
            let mut candidates = BTreeSet::new();
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let hex = name.strip_suffix(".zip").unwrap_or(name);
                if is_sha256_hex(hex) && !referenced.contains(hex) && !in_use.contains(hex) {
                    candidates.insert(hex.to_owned());
                }
            }
            let now = SystemTime::now();
            for hex in candidates {
                match self.remove_package_if_old(&hex, now, grace) {
                    Ok(Some((moved, bytes))) => removed.push((hex, moved, bytes)),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(sha256 = %hex, error = %error, "failed to collect unused code package");
                    }
                }
            }
        }
        // Outside the lock: removing a big tree takes a while and nothing can reach it now.
        let mut freed = 0;
        for (hex, moved, bytes) in &removed {
            if let Some(moved) = moved {
                if let Err(error) = force_remove_dir(moved) {
                    tracing::warn!(sha256 = %hex, path = %moved.display(), %error, "failed to remove unused code package; it is retried when the store is next opened");
                    continue;
                }
            }
            freed += bytes;
        }
        tracing::info!(
            packages = removed.len(),
            freed_bytes = freed,
            "store.collect_unused_code"
        );
        Ok(freed)
    }

    /// Under the code lock: if the package's newest file is older than `grace`, deletes its
    /// row and zip and renames its tree out of the way, returning the renamed tree (if there
    /// was one) and the package's size in bytes; `None` if it is too fresh to collect.
    fn remove_package_if_old(
        &self,
        hex: &str,
        now: SystemTime,
        grace: Duration,
    ) -> Result<Option<(Option<PathBuf>, u64)>, StoreError> {
        let zip_path = self.code_zip_path(hex);
        let dir = self.code_dir(hex);
        let io_err = |operation: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io {
                operation,
                path,
                source,
            }
        };
        let zip_meta = optional_metadata(&zip_path).map_err(io_err("stat", &zip_path))?;
        let dir_meta = optional_metadata(&dir)
            .map_err(io_err("stat", &dir))?
            .filter(|m| m.is_dir());
        let mut newest = None;
        for (meta, path) in [(&zip_meta, &zip_path), (&dir_meta, &dir)] {
            if let Some(meta) = meta {
                let modified = meta.modified().map_err(io_err("stat", path))?;
                newest = newest.max(Some(modified));
            }
        }
        let Some(newest) = newest else {
            return Ok(None);
        };
        // A modification time in the future counts as fresh.
        let age = now.duration_since(newest).unwrap_or(Duration::ZERO);
        if age < grace {
            return Ok(None);
        }
        let mut bytes = zip_meta.as_ref().map_or(0, |m| m.len());
        // The tree first: once it is gone from its name, the package is gone for `put_code`
        // and the engine; what follows only tidies up.
        let moved = match dir_meta {
            Some(_) => {
                bytes += tree_size(&dir).map_err(io_err("measure", &dir))?;
                let unique = uuid::Uuid::new_v4().simple().to_string();
                let moved = self
                    .inner
                    .code_root
                    .join(format!("{GC_PREFIX}{hex}-{unique}"));
                fs::rename(&dir, &moved).map_err(io_err("rename", &dir))?;
                Some(moved)
            }
            None => None,
        };
        if zip_meta.is_some() {
            if let Err(error) = fs::remove_file(&zip_path) {
                // Left for the next collection, which sees a zip without a tree.
                tracing::warn!(path = %zip_path.display(), %error, "failed to remove unused code zip");
            }
        }
        if let Err(error) = self
            .writer()
            .conn
            .execute("DELETE FROM code_packages WHERE sha256_hex = ?1", [hex])
        {
            // A stale row only caches sizes of identical content; a re-upload reuses it.
            tracing::warn!(sha256 = %hex, %error, "failed to delete code package record");
        }
        Ok(Some((moved, bytes)))
    }

    fn recorded_unzipped_size(&self, sha256_hex: &str) -> Option<u64> {
        self.reader()
            .query_row(
                "SELECT unzipped_size FROM code_packages WHERE sha256_hex = ?1",
                [sha256_hex],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .ok()
            .flatten()
            .map(|v| v as u64)
    }

    fn record_code(&self, info: &CodeInfo) -> Result<(), CodeError> {
        self.writer()
            .conn
            .execute(
                "INSERT INTO code_packages (sha256_hex, sha256_base64, zip_size, unzipped_size, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (sha256_hex) DO NOTHING",
                params![
                    info.sha256_hex,
                    info.sha256_base64,
                    info.zip_size as i64,
                    info.unzipped_size as i64,
                    now_ms()
                ],
            )
            .map(|_| ())
            .map_err(|source| CodeError::Database {
                sha256_hex: info.sha256_hex.clone(),
                source,
            })
    }
}

/// Removes temporaries of uploads interrupted by a crash. Best effort: failures are logged.
pub(crate) fn remove_stale_temporaries(code_root: &Path) {
    let Ok(entries) = fs::read_dir(code_root) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        let result = if is_real_dir(&path) {
            force_remove_dir(&path)
        } else {
            fs::remove_file(&path)
        };
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "failed to remove stale code upload temporary");
        }
    }
}

/// What one zip entry becomes.
enum Kind {
    Dir,
    File,
    Symlink,
}

/// Unpacks `zip` into the empty directory `dest`, enforcing `limits`; returns the total size
/// of the regular files written.
fn unpack(
    zip: &[u8],
    dest: &Path,
    limits: &CodeLimits,
    sha256_hex: &str,
) -> Result<u64, CodeError> {
    let invalid = |source: ZipError| CodeError::InvalidZip { source };
    let conflict = || invalid(ZipError::InvalidArchive("conflicting entries".into()));
    let io_err = |operation: &'static str, path: &Path| {
        let path = path.to_owned();
        let sha256_hex = sha256_hex.to_owned();
        move |source| CodeError::Io {
            operation,
            path,
            sha256_hex,
            source,
        }
    };
    // A failure to create something inside our own temporary tree because of what is
    // already there is the zip's fault (a file and a directory of the same name, a duplicate);
    // anything else (a full disk, permissions) is the platform's.
    let create_err = |operation: &'static str, path: &Path| {
        let io_err = io_err(operation, path);
        move |source: io::Error| match source.kind() {
            io::ErrorKind::AlreadyExists
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::IsADirectory => conflict(),
            _ => io_err(source),
        }
    };

    let mut archive = ZipArchive::new(Cursor::new(zip)).map_err(invalid)?;
    if archive.len() > limits.max_entries {
        return Err(CodeError::TooManyEntries {
            entries: archive.len(),
            limit: limits.max_entries,
        });
    }

    // Pass 1, headers only: names, kinds and declared sizes.
    let mut entries = Vec::with_capacity(archive.len());
    let mut declared: u64 = 0;
    for index in 0..archive.len() {
        let file = archive.by_index_raw(index).map_err(invalid)?;
        let name = file.name().to_owned();
        let components = check_entry_name(&name)?;
        let kind = if file.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            Kind::Symlink
        } else if file.is_dir() || name.ends_with('\\') {
            Kind::Dir
        } else {
            Kind::File
        };
        if matches!(kind, Kind::File) {
            declared = declared.saturating_add(file.size());
        }
        let executable = file.unix_mode().is_some_and(|m| m & 0o111 != 0);
        entries.push((index, name, components, kind, executable));
    }
    if declared > limits.unzipped_max_bytes {
        return Err(CodeError::UnzippedTooLarge {
            limit: limits.unzipped_max_bytes,
            declared: true,
        });
    }

    // Pass 2: directories and files, streamed and counted; symlinks are only read.
    let mut total: u64 = 0;
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let mut symlinks = Vec::new();
    for (index, name, components, kind, executable) in entries {
        if components.is_empty() {
            continue; // "./" and the like: the package root itself
        }
        let rel: PathBuf = components.iter().collect();
        let path = dest.join(&rel);
        match kind {
            Kind::Dir => {
                fs::create_dir_all(&path).map_err(create_err("create directory", &path))?;
            }
            Kind::Symlink => {
                let mut file = archive.by_index(index).map_err(invalid)?;
                let mut target = Vec::new();
                (&mut file)
                    .take(SYMLINK_TARGET_MAX_BYTES + 1)
                    .read_to_end(&mut target)
                    .map_err(|e| invalid(ZipError::Io(e)))?;
                if target.len() as u64 > SYMLINK_TARGET_MAX_BYTES {
                    return Err(CodeError::SymlinkEscape {
                        entry: name,
                        target: String::from_utf8_lossy(&target[..64]).into_owned(),
                    });
                }
                let target = String::from_utf8(target).map_err(|_| {
                    invalid(ZipError::InvalidArchive(
                        "symlink target is not UTF-8".into(),
                    ))
                })?;
                symlinks.push((name, components, target));
            }
            Kind::File => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(create_err("create directory", parent))?;
                }
                let mut file = archive.by_index(index).map_err(invalid)?;
                let compressed = file.compressed_size().max(1);
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(if executable { 0o755 } else { 0o644 })
                    .open(&path)
                    .map_err(create_err("create", &path))?;
                let mut written: u64 = 0;
                loop {
                    let n = match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(invalid(ZipError::Io(e))),
                    };
                    written += n as u64;
                    total += n as u64;
                    if total > limits.unzipped_max_bytes {
                        return Err(CodeError::UnzippedTooLarge {
                            limit: limits.unzipped_max_bytes,
                            declared: false,
                        });
                    }
                    if written > limits.ratio_min_bytes
                        && written / compressed > limits.max_compression_ratio
                    {
                        return Err(CodeError::ZipBomb {
                            entry: name,
                            compressed,
                            uncompressed: written,
                        });
                    }
                    out.write_all(&buf[..n]).map_err(io_err("write", &path))?;
                }
                let mode = if executable { 0o555 } else { 0o444 };
                out.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io_err("chmod", &path))?;
            }
        }
    }

    // Pass 3: symlinks, last, so nothing above was ever written through one. Every target
    // must resolve inside the package without passing through another symlink, and the
    // link's own parent must be a real directory (no link is created inside a link).
    let link_paths: HashSet<String> = symlinks.iter().map(|(_, c, _)| c.join("/")).collect();
    for (_, components, _) in &symlinks {
        let parent: PathBuf = components[..components.len() - 1].iter().collect();
        let parent = dest.join(parent);
        fs::create_dir_all(&parent).map_err(create_err("create directory", &parent))?;
    }
    for (name, components, target) in symlinks {
        if !symlink_stays_inside(&components, &target, &link_paths) {
            return Err(CodeError::SymlinkEscape {
                entry: name,
                target,
            });
        }
        let path = dest.join(components.iter().collect::<PathBuf>());
        std::os::unix::fs::symlink(&target, &path).map_err(create_err("create symlink", &path))?;
    }
    Ok(total)
}

/// Checks an entry name and returns its normal components (`.` and empty ones dropped).
/// Rejects absolute names, drive prefixes, `..` components and NUL bytes; `\` counts as a
/// separator, as Windows tools write it.
fn check_entry_name(name: &str) -> Result<Vec<String>, CodeError> {
    let traversal = || CodeError::PathTraversal {
        entry: name.to_owned(),
    };
    if name.starts_with('/') || name.starts_with('\\') || name.contains('\0') {
        return Err(traversal());
    }
    let mut components = Vec::new();
    for (i, part) in name.split(['/', '\\']).enumerate() {
        match part {
            "" | "." => {}
            ".." => return Err(traversal()),
            _ if i == 0 && has_drive_prefix(part) => return Err(traversal()),
            _ => components.push(part.to_owned()),
        }
    }
    Ok(components)
}

fn has_drive_prefix(part: &str) -> bool {
    let b = part.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Whether a symlink at `link` (package-relative components) pointing at `target` resolves
/// inside the package, resolving `..` lexically from the link's directory. Passing through
/// another symlink of the package (other than as the final component) is refused, because
/// then lexical resolution would not be what the kernel does.
fn symlink_stays_inside(link: &[String], target: &str, link_paths: &HashSet<String>) -> bool {
    if target.is_empty()
        || target.starts_with('/')
        || target.starts_with('\\')
        || target.contains('\0')
    {
        return false;
    }
    let mut stack: Vec<&str> = link[..link.len() - 1].iter().map(String::as_str).collect();
    let parts: Vec<&str> = target.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        match *part {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return false;
                }
            }
            _ => {
                if i == 0 && has_drive_prefix(part) {
                    return false;
                }
                stack.push(part);
                let is_last = parts[i + 1..].iter().all(|p| p.is_empty() || *p == ".");
                if !is_last && link_paths.contains(&stack.join("/")) {
                    return false;
                }
            }
        }
    }
    true
}

/// Sets every directory under (and including) `root` to `0555`; files already have their
/// final modes and symlinks have none.
fn make_read_only(root: &Path) -> io::Result<()> {
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_read_only(&entry.path())?;
        }
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o555))
}

/// Removes a tree made read-only by `make_read_only` (directories need `w` to lose entries).
fn force_remove_dir(root: &Path) -> io::Result<()> {
    fn make_writable(dir: &Path) -> io::Result<()> {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                make_writable(&entry.path())?;
            }
        }
        Ok(())
    }
    make_writable(root)?;
    fs::remove_dir_all(root)
}

/// Total size of the regular files under `root`, not following symlinks.
fn tree_size(root: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += tree_size(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

fn write_file_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `symlink_metadata`, with `None` for a path that does not exist.
fn optional_metadata(path: &Path) -> io::Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A temporary file or directory inside `code/`, removed on drop unless `keep` was called.
struct TempPath {
    path: PathBuf,
    keep: bool,
}

impl TempPath {
    fn new(path: PathBuf) -> Self {
        TempPath { path, keep: false }
    }
    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let result = if is_real_dir(&self.path) {
            force_remove_dir(&self.path)
        } else {
            match fs::remove_file(&self.path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        if let Err(error) = result {
            tracing::warn!(path = %self.path.display(), %error, "failed to remove code upload temporary");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn opts() -> SimpleFileOptions {
        SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(0o644)
    }

    /// A zip of `(name, contents, unix mode)` regular files.
    fn zip_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        for (name, contents, mode) in files {
            w.start_file(*name, opts().unix_permissions(*mode)).unwrap();
            w.write_all(contents).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn zip_with_symlink(link: &str, target: &str) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("index.py", opts()).unwrap();
        w.write_all(b"print(1)").unwrap();
        w.add_symlink(link, target, opts()).unwrap();
        w.finish().unwrap().into_inner()
    }

    /// A zip with one entry of `size` zeros, streamed through the writer in 1 MiB pieces so
    /// the uncompressed data is never in memory at once.
    fn zeros_zip(name: &str, size: u64) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file(name, opts().large_file(size > u32::MAX as u64))
            .unwrap();
        let chunk = vec![0u8; 1024 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            w.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        w.finish().unwrap().into_inner()
    }

    fn no_temporaries_left(store: &Store) {
        let left: Vec<_> = fs::read_dir(&store.inner.code_root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "temporaries left behind: {left:?}");
    }

    #[test]
    fn stores_unpacks_read_only_and_keeps_exec_bit() {
        let (_d, store) = store();
        let zip = zip_of(&[
            ("bootstrap", b"#!/bin/sh\necho hi\n", 0o755),
            ("lib/data.txt", b"hello", 0o600),
        ]);
        let info = store.put_code(&zip).unwrap();
        assert_eq!(info.sha256_hex, hex(&Sha256::digest(&zip)));
        assert_eq!(
            STANDARD.decode(&info.sha256_base64).unwrap(),
            Sha256::digest(&zip).to_vec()
        );
        assert_eq!(info.zip_size, zip.len() as u64);
        assert_eq!(info.unzipped_size, 18 + 5);
        let dir = store.code_dir(&info.sha256_hex);
        assert_eq!(
            fs::read(store.code_zip_path(&info.sha256_hex)).unwrap(),
            zip
        );
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir.join("bootstrap")), 0o555);
        assert_eq!(mode(&dir.join("lib/data.txt")), 0o444);
        assert_eq!(mode(&dir.join("lib")), 0o555);
        assert_eq!(mode(&dir), 0o555);
        assert_eq!(fs::read(dir.join("lib/data.txt")).unwrap(), b"hello");
        assert_eq!(store.code_info(&info.sha256_hex).unwrap(), Some(info));
        no_temporaries_left(&store);
    }

    #[test]
    fn identical_upload_shares_storage_without_unpacking_again() {
        let (_d, store) = store();
        let zip = zip_of(&[("index.js", b"exports.handler = async () => 1", 0o644)]);
        let first = store.put_code(&zip).unwrap();
        let dir = store.code_dir(&first.sha256_hex);
        let inode = fs::metadata(&dir).unwrap().ino();
        let second = store.put_code(&zip).unwrap();
        assert_eq!(first, second);
        // A fresh unpack would have renamed a new directory (new inode) into place.
        assert_eq!(fs::metadata(&dir).unwrap().ino(), inode);
        let packages = fs::read_dir(&store.inner.code_root).unwrap().count();
        assert_eq!(packages, 2, "one zip and one tree");
    }

    #[test]
    fn concurrent_puts_of_same_zip_are_safe() {
        let (_d, store) = store();
        let files: Vec<(String, Vec<u8>)> = (0..50)
            .map(|i| {
                (
                    format!("pkg/file{i}.txt"),
                    vec![b'a' + (i % 26) as u8; 10_000],
                )
            })
            .collect();
        let refs: Vec<(&str, &[u8], u32)> = files
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_slice(), 0o644))
            .collect();
        let zip = zip_of(&refs);
        let infos: Vec<CodeInfo> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| store.put_code(&zip).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(infos.windows(2).all(|w| w[0] == w[1]));
        let dir = store.code_dir(&infos[0].sha256_hex);
        assert_eq!(fs::read_dir(dir.join("pkg")).unwrap().count(), 50);
        no_temporaries_left(&store);
    }

    #[test]
    fn rejects_zip_entry_outside_package() {
        let (_d, store) = store();
        for name in [
            "../evil",
            "a/../../evil",
            "/abs",
            "\\abs",
            "C:/windows/evil",
            "a\\..\\..\\x",
        ] {
            let err = store.put_code(&zip_of(&[(name, b"x", 0o644)])).unwrap_err();
            assert!(
                matches!(err, CodeError::PathTraversal { .. }),
                "{name}: {err:?}"
            );
            assert_eq!(err.aws_error_type(), "InvalidParameterValueException");
        }
        no_temporaries_left(&store);
        assert!(!_d.path().join("evil").exists());
    }

    #[test]
    fn rejects_symlink_to_absolute_or_outside_target() {
        let (_d, store) = store();
        for (link, target) in [
            ("passwd", "/etc/passwd"),
            ("sub/x", "../../x"),
            ("x", ".."),
            ("a/b/c", "../../../etc"),
        ] {
            let err = store.put_code(&zip_with_symlink(link, target)).unwrap_err();
            assert!(
                matches!(err, CodeError::SymlinkEscape { .. }),
                "{link} -> {target}: {err:?}"
            );
        }
        no_temporaries_left(&store);
    }

    #[test]
    fn rejects_symlink_chains_that_escape() {
        let (_d, store) = store();
        // `d/l1 -> ..` is the package root; `l2 -> d/l1/..` looks inside lexically but the
        // kernel would resolve it above the package.
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        w.add_symlink("d/l1", "..", opts()).unwrap();
        w.add_symlink("l2", "d/l1/..", opts()).unwrap();
        let zip = w.finish().unwrap().into_inner();
        let err = store.put_code(&zip).unwrap_err();
        assert!(
            matches!(err, CodeError::SymlinkEscape { ref entry, .. } if entry == "l2"),
            "{err:?}"
        );
        // A file written through a symlink entry is a conflict, never a write outside.
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        w.add_symlink("link", ".", opts()).unwrap();
        w.start_file("link/file", opts()).unwrap();
        w.write_all(b"x").unwrap();
        let zip = w.finish().unwrap().into_inner();
        assert!(matches!(
            store.put_code(&zip).unwrap_err(),
            CodeError::InvalidZip { .. }
        ));
        no_temporaries_left(&store);
    }

    #[test]
    fn accepts_symlinks_inside_package() {
        let (_d, store) = store();
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("pkg/bin/tool.js", opts().unix_permissions(0o755))
            .unwrap();
        w.write_all(b"x").unwrap();
        w.add_symlink("node_modules/.bin/tool", "../../pkg/bin/tool.js", opts())
            .unwrap();
        w.add_symlink("current", "pkg", opts()).unwrap();
        let info = store.put_code(&w.finish().unwrap().into_inner()).unwrap();
        let dir = store.code_dir(&info.sha256_hex);
        assert_eq!(fs::read(dir.join("node_modules/.bin/tool")).unwrap(), b"x");
        assert_eq!(
            fs::read_link(dir.join("current")).unwrap(),
            Path::new("pkg")
        );
    }

    #[test]
    fn rejects_oversized_zip() {
        let (_d, store) = store();
        let zip = zip_of(&[("a", &[7u8; 2000], 0o644)]);
        let limits = CodeLimits {
            zipped_max_bytes: 100,
            ..CodeLimits::default()
        };
        let err = store.put_code_with_limits(&zip, &limits).unwrap_err();
        assert!(
            matches!(err, CodeError::TooLarge { limit: 100, .. }),
            "{err:?}"
        );
        assert_eq!(
            (err.aws_error_type(), err.http_status()),
            ("RequestEntityTooLargeException", 413)
        );
    }

    #[test]
    fn rejects_300_mb_zip_bomb_by_declared_size() {
        let (_d, store) = store();
        let zip = zeros_zip("zeros.bin", 300 * 1024 * 1024);
        assert!(zip.len() < 1024 * 1024, "zip is {} bytes", zip.len());
        let err = store.put_code(&zip).unwrap_err();
        assert!(
            matches!(err, CodeError::UnzippedTooLarge { declared: true, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "Unzipped size must be smaller than 262144000 bytes"
        );
        no_temporaries_left(&store);
    }

    /// Rewrites the declared uncompressed size of every entry (local and central headers).
    fn lie_about_sizes(mut zip: Vec<u8>, size: u32) -> Vec<u8> {
        let mut i = 0;
        while i + 4 <= zip.len() {
            let sig = u32::from_le_bytes(zip[i..i + 4].try_into().unwrap());
            let at = match sig {
                0x04034b50 => Some(i + 22), // local file header
                0x02014b50 => Some(i + 24), // central directory header
                _ => None,
            };
            if let Some(at) = at {
                zip[at..at + 4].copy_from_slice(&size.to_le_bytes());
            }
            i += 1;
        }
        zip
    }

    #[test]
    fn rejects_actual_unzipped_size_over_limit_despite_lying_headers() {
        let (_d, store) = store();
        let zip = lie_about_sizes(zeros_zip("zeros.bin", 8 * 1024 * 1024), 10);
        let limits = CodeLimits {
            unzipped_max_bytes: 4 * 1024 * 1024,
            ..CodeLimits::default()
        };
        let err = store.put_code_with_limits(&zip, &limits).unwrap_err();
        assert!(
            matches!(
                err,
                CodeError::UnzippedTooLarge {
                    declared: false,
                    ..
                }
            ),
            "{err:?}"
        );
        no_temporaries_left(&store);
    }

    #[test]
    fn rejects_absurd_compression_ratio() {
        let (_d, store) = store();
        let zip = zeros_zip("zeros.bin", 4 * 1024 * 1024);
        let limits = CodeLimits {
            max_compression_ratio: 100,
            ..CodeLimits::default()
        };
        let err = store.put_code_with_limits(&zip, &limits).unwrap_err();
        assert!(matches!(err, CodeError::ZipBomb { .. }), "{err:?}");
        // The default limits accept a small, very compressible but harmless file.
        store.put_code(&zeros_zip("small.bin", 512 * 1024)).unwrap();
    }

    #[test]
    fn rejects_too_many_entries() {
        let (_d, store) = store();
        let files: Vec<String> = (0..11).map(|i| format!("f{i}")).collect();
        let refs: Vec<(&str, &[u8], u32)> = files
            .iter()
            .map(|n| (n.as_str(), &b""[..], 0o644))
            .collect();
        let limits = CodeLimits {
            max_entries: 10,
            ..CodeLimits::default()
        };
        let err = store
            .put_code_with_limits(&zip_of(&refs), &limits)
            .unwrap_err();
        assert!(
            matches!(
                err,
                CodeError::TooManyEntries {
                    entries: 11,
                    limit: 10
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_non_zip_and_corrupt_zip() {
        let (_d, store) = store();
        let err = store.put_code(b"definitely not a zip file").unwrap_err();
        assert!(matches!(err, CodeError::InvalidZip { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "Could not unzip uploaded file. Please check your file, then try to upload again."
        );
        assert!(store.put_code(b"").is_err());
        // Flip bytes in the compressed data: the directory parses, the data does not.
        let contents: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut zip = zip_of(&[("data.bin", &contents, 0o644)]);
        for b in &mut zip[100..400] {
            *b ^= 0x5a;
        }
        let err = store.put_code(&zip).unwrap_err();
        assert!(matches!(err, CodeError::InvalidZip { .. }), "{err:?}");
        // Truncated.
        let zip = zip_of(&[("data.bin", &contents, 0o644)]);
        let err = store.put_code(&zip[..zip.len() / 2]).unwrap_err();
        assert!(matches!(err, CodeError::InvalidZip { .. }), "{err:?}");
        no_temporaries_left(&store);
    }

    #[test]
    fn rejected_upload_leaves_nothing_visible() {
        let (_d, store) = store();
        let zip = zip_of(&[("ok.txt", b"fine", 0o644), ("../evil", b"x", 0o644)]);
        let hex = hex(&Sha256::digest(&zip));
        assert!(store.put_code(&zip).is_err());
        assert!(!store.code_dir(&hex).exists());
        assert!(!store.code_zip_path(&hex).exists());
        assert_eq!(store.code_info(&hex).unwrap(), None);
    }

    #[test]
    fn code_paths_refuse_non_hash_input() {
        let (_d, store) = store();
        for bad in ["../../etc", "ABC", ""] {
            assert!(store.code_dir(bad).ends_with(".invalid-sha256"));
            assert!(!store.code_dir(bad).exists());
        }
    }

    #[test]
    fn removes_stale_temporaries_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stale = store.inner.code_root.join(format!("{TEMP_PREFIX}abc"));
        fs::create_dir_all(stale.join("sub")).unwrap();
        make_read_only(&stale).unwrap();
        drop(store);
        Store::open(dir.path()).unwrap();
        assert!(!stale.exists());
    }

    #[test]
    fn package_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[("a.py", b"x = 1", 0o644)]);
        let info = Store::open(dir.path()).unwrap().put_code(&zip).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.code_info(&info.sha256_hex).unwrap(),
            Some(info.clone())
        );
        assert_eq!(store.put_code(&zip).unwrap(), info);
    }

    const GRACE: Duration = Duration::from_secs(600);

    /// Backdates a package's zip and tree by `by`, as if uploaded that long ago.
    fn backdate(store: &Store, hex: &str, by: Duration) {
        let then = SystemTime::now() - by;
        for path in [store.code_zip_path(hex), store.code_dir(hex)] {
            fs::File::open(&path).unwrap().set_modified(then).unwrap();
        }
    }

    fn row_count(store: &Store, hex: &str) -> i64 {
        store
            .reader()
            .query_row(
                "SELECT COUNT(*) FROM code_packages WHERE sha256_hex = ?1",
                [hex],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn collects_only_unreferenced_packages_older_than_grace() {
        let (_d, store) = store();
        let used = store.put_code(&zip_of(&[("a.py", b"a", 0o644)])).unwrap();
        let old = store
            .put_code(&zip_of(&[("lib/b.py", b"bb", 0o755)]))
            .unwrap();
        let fresh = store.put_code(&zip_of(&[("c.py", b"c", 0o644)])).unwrap();
        let mut cfg = crate::functions::tests::config("f", "r1");
        cfg.code_sha256_hex = used.sha256_hex.clone();
        store.create_function(&cfg, &Default::default()).unwrap();
        backdate(&store, &used.sha256_hex, Duration::from_secs(3600));
        backdate(&store, &old.sha256_hex, Duration::from_secs(3600));

        let freed = store.collect_unused_code(GRACE).unwrap();
        assert_eq!(freed, old.zip_size + old.unzipped_size);
        assert_eq!(store.code_info(&old.sha256_hex).unwrap(), None);
        assert!(!store.code_zip_path(&old.sha256_hex).exists());
        assert!(!store.code_dir(&old.sha256_hex).exists());
        assert_eq!(row_count(&store, &old.sha256_hex), 0);
        assert_eq!(
            store.code_info(&used.sha256_hex).unwrap(),
            Some(used.clone())
        );
        assert_eq!(
            store.code_info(&fresh.sha256_hex).unwrap(),
            Some(fresh.clone())
        );
        no_temporaries_left(&store);
        assert_eq!(store.collect_unused_code(GRACE).unwrap(), 0);

        // Without a grace, only what the caller says is still running keeps a package.
        let running = HashSet::from([fresh.sha256_hex.clone()]);
        assert_eq!(
            store
                .collect_unused_code_except(Duration::ZERO, &running)
                .unwrap(),
            0
        );
        assert!(store.code_info(&fresh.sha256_hex).unwrap().is_some());
        assert!(store.collect_unused_code(Duration::ZERO).unwrap() > 0);
        assert_eq!(store.code_info(&fresh.sha256_hex).unwrap(), None);
        // A referenced package stays whatever the grace.
        assert_eq!(store.collect_unused_code(Duration::ZERO).unwrap(), 0);
        assert_eq!(store.code_info(&used.sha256_hex).unwrap(), Some(used));
    }

    #[test]
    fn a_published_version_keeps_its_package_after_latest_moves_on() {
        let (_d, store) = store();
        let v1 = store.put_code(&zip_of(&[("a.py", b"one", 0o644)])).unwrap();
        let v2 = store.put_code(&zip_of(&[("a.py", b"two", 0o644)])).unwrap();
        let mut cfg = crate::functions::tests::config("f", "r1");
        cfg.code_sha256_hex = v1.sha256_hex.clone();
        store.create_function(&cfg, &Default::default()).unwrap();
        cfg.version = store.next_version_number(&cfg.name).unwrap().to_string();
        store.put_version(&cfg).unwrap();
        let mut latest = crate::functions::tests::config("f", "r2");
        latest.code_sha256_hex = v2.sha256_hex.clone();
        store.update_function(&latest, None).unwrap();
        assert_eq!(store.collect_unused_code(Duration::ZERO).unwrap(), 0);
        assert!(store.code_info(&v1.sha256_hex).unwrap().is_some());
        store.delete_version(&cfg.name, 1).unwrap();
        assert!(store.collect_unused_code(Duration::ZERO).unwrap() > 0);
        assert_eq!(store.code_info(&v1.sha256_hex).unwrap(), None);
    }

    #[test]
    fn reupload_of_existing_package_restarts_its_grace() {
        let (_d, store) = store();
        let zip = zip_of(&[("a.py", b"x = 1", 0o644)]);
        let info = store.put_code(&zip).unwrap();
        backdate(&store, &info.sha256_hex, Duration::from_secs(3600));
        // The upload a CreateFunction is about to reference finds the package stored.
        assert_eq!(store.put_code(&zip).unwrap(), info);
        assert_eq!(store.collect_unused_code(GRACE).unwrap(), 0);
        assert_eq!(
            store.code_info(&info.sha256_hex).unwrap(),
            Some(info.clone())
        );
        // Once collected, the same upload stores it again from scratch.
        backdate(&store, &info.sha256_hex, Duration::from_secs(3600));
        assert!(store.collect_unused_code(GRACE).unwrap() > 0);
        assert_eq!(store.put_code(&zip).unwrap(), info);
        assert_eq!(
            store.code_info(&info.sha256_hex).unwrap(),
            Some(info.clone())
        );
        assert_eq!(row_count(&store, &info.sha256_hex), 1);
    }

    #[test]
    fn collects_half_stored_package_and_ignores_foreign_entries() {
        let (_d, store) = store();
        let info = store.put_code(&zip_of(&[("a.py", b"a", 0o644)])).unwrap();
        backdate(&store, &info.sha256_hex, Duration::from_secs(3600));
        // A crash between the two renames of an upload leaves a zip without a tree.
        force_remove_dir(&store.code_dir(&info.sha256_hex)).unwrap();
        let root = &store.inner.code_root;
        fs::write(root.join("notes.txt"), b"keep me").unwrap();
        fs::create_dir(root.join("abc")).unwrap();
        assert_eq!(
            store.collect_unused_code(Duration::ZERO).unwrap(),
            info.zip_size
        );
        assert!(!store.code_zip_path(&info.sha256_hex).exists());
        assert!(root.join("notes.txt").is_file() && root.join("abc").is_dir());
    }
}
