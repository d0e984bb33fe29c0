//! Packs a function's directory into a deployment zip, in memory.
//!
//! Entries are sorted and stamped with a fixed time (1980-01-01), so packing the same tree twice
//! gives the same bytes and the same `CodeSha256`. Unix modes are kept (an executable
//! `bootstrap` stays executable); symlinks that stay inside the directory are stored as symlinks,
//! those that point outside it are refused.
//!
//! Not for: unpacking (the server's store does that) or size policy (the server enforces AWS's
//! limits and answers with a clear error).

use std::io::{Cursor, Write};
use std::path::{Component, Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// Why a directory could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("symlink {path} points outside the package (to {target})")]
    SymlinkEscape { path: PathBuf, target: PathBuf },
    #[error("{path} has a name that is not valid UTF-8")]
    NonUtf8Name { path: PathBuf },
    #[error("failed to write zip entry {name}")]
    Zip {
        name: String,
        #[source]
        source: zip::result::ZipError,
    },
}

/// A packed code package.
#[derive(Debug, Clone)]
pub struct Package {
    /// The zip file's bytes.
    pub zip: Vec<u8>,
    /// How many regular files it holds.
    pub files: usize,
}

/// Zips every file, directory and in-package symlink under `dir` (deflate, modes kept).
pub fn pack_dir(dir: &Path) -> Result<Package, PackError> {
    let meta = std::fs::metadata(dir).map_err(|source| PackError::Read {
        path: dir.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(PackError::NotADirectory {
            path: dir.to_owned(),
        });
    }
    let root = dir.canonicalize().map_err(|source| PackError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let mut files = 0;
    add_tree(&mut writer, &root, &root, &mut files)?;
    let zip = writer
        .finish()
        .map_err(|source| PackError::Zip {
            name: "central directory".to_owned(),
            source,
        })?
        .into_inner();
    Ok(Package { zip, files })
}

fn options(mode: u32) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .unix_permissions(mode & 0o7777)
        .large_file(false)
}

fn add_tree(
    writer: &mut ZipWriter<Cursor<Vec<u8>>>,
    root: &Path,
    dir: &Path,
    files: &mut usize,
) -> Result<(), PackError> {
    use std::os::unix::fs::PermissionsExt;

    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| PackError::Read { path, source }
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err(dir))?;
    entries.sort();

    for path in entries {
        let rel = path.strip_prefix(root).expect("entries lie under the root");
        let name = rel
            .to_str()
            .ok_or_else(|| PackError::NonUtf8Name { path: path.clone() })?
            .to_owned();
        let meta = std::fs::symlink_metadata(&path).map_err(read_err(&path))?;
        let mode = meta.permissions().mode();
        let zip_err = |name: &str| {
            let name = name.to_owned();
            move |source| PackError::Zip { name, source }
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(read_err(&path))?;
            check_symlink(root, &path, &target)?;
            let target_str = target
                .to_str()
                .ok_or_else(|| PackError::NonUtf8Name { path: path.clone() })?;
            writer
                .add_symlink(&name, target_str, options(0o777))
                .map_err(zip_err(&name))?;
        } else if meta.is_dir() {
            writer
                .add_directory(format!("{name}/"), options(mode))
                .map_err(zip_err(&name))?;
            add_tree(writer, root, &path, files)?;
        } else if meta.is_file() {
            let data = std::fs::read(&path).map_err(read_err(&path))?;
            let mut opts = options(mode);
            if data.len() as u64 >= u32::MAX as u64 {
                opts = opts.large_file(true);
            }
            writer.start_file(&name, opts).map_err(zip_err(&name))?;
            writer
                .write_all(&data)
                .map_err(|e| zip_err(&name)(e.into()))?;
            *files += 1;
        }
        // Sockets, fifos and devices have no place in a code package: skipped.
    }
    Ok(())
}

/// Refuses a symlink whose target (followed, or lexically when dangling) leaves `root`.
fn check_symlink(root: &Path, link: &Path, target: &Path) -> Result<(), PackError> {
    let escape = || PackError::SymlinkEscape {
        path: link.to_owned(),
        target: target.to_owned(),
    };
    let parent = link.parent().expect("a package entry has a parent");
    let joined = parent.join(target);
    // Lexically first: an absolute target or `..` past the root is refused even if it exists.
    let lexical = normalize(&joined).ok_or_else(escape)?;
    if !lexical.starts_with(root) {
        return Err(escape());
    }
    // Then through any intermediate symlinks, when the target exists.
    if let Ok(real) = joined.canonicalize() {
        if !real.starts_with(root) {
            return Err(escape());
        }
    }
    Ok(())
}

/// Resolves `.` and `..` without touching the file system; `None` if `..` climbs past `/`.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, data: &str, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn keeps_exec_bit_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("bootstrap"), "#!/bin/sh\n", 0o755);
        write(&dir.path().join("lib/data.txt"), "hello", 0o644);
        let pkg = pack_dir(dir.path()).unwrap();
        assert_eq!(pkg.files, 2);

        let mut archive = zip::ZipArchive::new(Cursor::new(pkg.zip)).unwrap();
        let boot = archive.by_name("bootstrap").unwrap();
        assert_eq!(boot.unix_mode().unwrap() & 0o777, 0o755);
        assert_eq!(boot.compression(), CompressionMethod::Deflated);
        drop(boot);
        let mut data = archive.by_name("lib/data.txt").unwrap();
        assert_eq!(data.unix_mode().unwrap() & 0o777, 0o644);
        let mut s = String::new();
        data.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        drop(data);
        assert!(archive.by_name("lib/").unwrap().is_dir());
    }

    #[test]
    fn packing_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("a.py"), "x = 1\n", 0o644);
        write(&dir.path().join("b/c.py"), "y = 2\n", 0o644);
        assert_eq!(
            pack_dir(dir.path()).unwrap().zip,
            pack_dir(dir.path()).unwrap().zip
        );
    }

    #[test]
    fn refuses_symlink_escaping_the_package() {
        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("secret"), "s", 0o600);
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("app.py"), "", 0o644);
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        let err = pack_dir(dir.path()).unwrap_err();
        assert!(matches!(err, PackError::SymlinkEscape { .. }), "{err}");
    }

    #[test]
    fn refuses_relative_symlink_climbing_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("../../etc/passwd", dir.path().join("sub/link")).unwrap();
        assert!(matches!(
            pack_dir(dir.path()).unwrap_err(),
            PackError::SymlinkEscape { .. }
        ));
    }

    #[test]
    fn keeps_symlink_inside_the_package() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("real.py"), "z = 3\n", 0o644);
        std::os::unix::fs::symlink("real.py", dir.path().join("alias.py")).unwrap();
        let pkg = pack_dir(dir.path()).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(pkg.zip)).unwrap();
        let link = archive.by_name("alias.py").unwrap();
        assert!(link.is_symlink());
    }

    #[test]
    fn refuses_a_file_as_directory() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("f"), "", 0o644);
        assert!(matches!(
            pack_dir(&dir.path().join("f")).unwrap_err(),
            PackError::NotADirectory { .. }
        ));
    }
}
