//! What starts inside an execution environment, per runtime family.
//!
//! Serval ships its own small runtime bootstraps for Python and Node.js inside the binary
//! (`bootstrap/python/`, `bootstrap/node/bootstrap.cjs`, embedded with `include_str!`). They speak only the Lambda Runtime API `2018-06-01`, so an official runtime
//! client (`awslambdaric`, `aws-lambda-ric`) can replace them. `provided*` runtimes start the
//! package's own `bootstrap` executable.
//!
//! [`RuntimeSet::discover`] runs once at server start-up: it finds the real interpreters (never
//! a version-manager shim, which would add tens of milliseconds to every cold start) and writes
//! the bootstrap files into the runtime directory. [`RuntimeSet::launch`] then says, without
//! touching the interpreters again, how to start one environment: a [`LaunchSpec`].
//!
//! This crate does not start processes, build the environment's variables (beyond the
//! runtime-specific extras in [`LaunchSpec::env`]) or serve the Runtime API: that is the
//! engine's and the sandbox's work.
//!
//! # Python start-up
//! Python is started with `-S`: importing `site` runs every `.pth` file of the interpreter's
//! site-packages, which on a development machine can cost more than the whole rest of start-up
//! (30 ms measured here, from one `.pth` importing `certifi`). The bootstrap instead puts the
//! interpreter's site-packages directories on `sys.path` itself (after the task root and
//! `/opt/python`), so installed packages stay importable; `.pth` files and `sitecustomize` are
//! not run, which matches AWS, where the function's packages live in the task root.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serval_model::{Runtime, RuntimeFamily};

/// Serval's Python entry point, written to `<runtime_dir>/python/bootstrap.py`: a stub that
/// imports [`PYTHON_RUNTIME`], so that the runtime's bytecode is cached rather than compiled on
/// every start (~4 ms).
pub const PYTHON_BOOTSTRAP: &str = include_str!("../bootstrap/python/bootstrap.py");
/// Serval's Python runtime, written to `<runtime_dir>/python/serval_runtime.py`.
pub const PYTHON_RUNTIME: &str = include_str!("../bootstrap/python/serval_runtime.py");
/// Serval's Node.js bootstrap, written to `<runtime_dir>/node/bootstrap.cjs`.
pub const NODE_BOOTSTRAP: &str = include_str!("../bootstrap/node/bootstrap.cjs");

/// Overrides the Python interpreter (a path to the real binary, not a shim).
pub const PYTHON_ENV: &str = "SERVAL_PYTHON";
/// Overrides the Node.js binary.
pub const NODE_ENV: &str = "SERVAL_NODE";

const PYTHON_BOOTSTRAP_PATH: &str = "python/bootstrap.py";
const PYTHON_RUNTIME_PATH: &str = "python/serval_runtime.py";
const NODE_BOOTSTRAP_PATH: &str = "node/bootstrap.cjs";
/// Where environments look after the interpreters' own directories.
const BASE_SEARCH_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A failure to prepare the runtimes at start-up (a platform failure: the server cannot run).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("failed to create runtime directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write bootstrap {path}")]
    WriteBootstrap {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why an environment of a runtime cannot be started. The engine reports it to the caller as a
/// function error of type [`LaunchError::error_type`], as AWS reports an init failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// The interpreter of a runtime family was not found at start-up.
    #[error("no {program} interpreter for runtime {runtime}: {reason}")]
    InterpreterMissing {
        runtime: Runtime,
        program: &'static str,
        reason: String,
    },
    /// A `provided*` package without an executable `bootstrap` at its root.
    #[error("Couldn't find valid bootstrap(s): [{}]", path.display())]
    InvalidEntrypoint { path: PathBuf },
}

impl LaunchError {
    /// AWS's error type for this failure (`errorType` of the function error).
    pub fn error_type(&self) -> &'static str {
        match self {
            LaunchError::InterpreterMissing { .. } => "Runtime.Unknown",
            LaunchError::InvalidEntrypoint { .. } => "Runtime.InvalidEntrypoint",
        }
    }
}

/// Where a runtime process sees the function's code and Serval's runtime files.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// `LAMBDA_TASK_ROOT` as the runtime sees it.
    pub task_root: &'a Path,
    /// `LAMBDA_RUNTIME_DIR` as the runtime sees it.
    pub runtime_dir: &'a Path,
}

/// How to start one execution environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The executable to run.
    pub program: PathBuf,
    /// Its arguments (not including the program itself).
    pub args: Vec<OsString>,
    /// Runtime-specific variables to add to the environment's standard ones.
    pub env: Vec<(String, String)>,
}

/// An interpreter found at start-up, or why it was not.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Interpreter {
    Found(PathBuf),
    Missing(String),
}

impl Interpreter {
    fn path(&self) -> Option<&Path> {
        match self {
            Interpreter::Found(p) => Some(p),
            Interpreter::Missing(_) => None,
        }
    }
}

/// The runtimes this server can start, resolved once at start-up.
#[derive(Debug, Clone)]
pub struct RuntimeSet {
    runtime_dir: PathBuf,
    python: Interpreter,
    node: Interpreter,
    search_path: String,
}

impl RuntimeSet {
    /// Finds the interpreters and writes the bootstrap files into `runtime_dir`.
    ///
    /// Blocking; call once at start-up. Python: `$SERVAL_PYTHON` if set, else the
    /// `sys.executable` reported by `python3` on `PATH` (so a pyenv/asdf shim is resolved to
    /// the real binary once, not on every start). Node.js: `$SERVAL_NODE` if set, else `node` on
    /// `PATH`, canonicalized. A missing interpreter is not an error here: launching that family
    /// fails with [`LaunchError::InterpreterMissing`].
    pub fn discover(runtime_dir: &Path) -> Result<RuntimeSet, RuntimeError> {
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        let python = match std::env::var_os(PYTHON_ENV).filter(|v| !v.is_empty()) {
            Some(p) => check_executable(PathBuf::from(p), PYTHON_ENV),
            None => probe_python(&path_var),
        };
        let node = match std::env::var_os(NODE_ENV).filter(|v| !v.is_empty()) {
            Some(p) => check_executable(PathBuf::from(p), NODE_ENV),
            None => match find_on_path("node", &path_var) {
                Some(p) => Interpreter::Found(fs::canonicalize(&p).unwrap_or(p)),
                None => Interpreter::Missing("`node` not found on PATH".into()),
            },
        };
        for (family, i) in [("python", &python), ("node", &node)] {
            match i {
                Interpreter::Found(p) => {
                    tracing::info!(family, path = %p.display(), "runtimes.discover found interpreter")
                }
                Interpreter::Missing(reason) => {
                    tracing::warn!(family, %reason, "runtimes.discover interpreter missing")
                }
            }
        }
        write_bootstraps(runtime_dir)?;
        if let Interpreter::Found(python) = &python {
            precompile_python(python, &runtime_dir.join(PYTHON_RUNTIME_PATH));
        }
        let search_path = build_search_path([python.path(), node.path()]);
        Ok(RuntimeSet {
            runtime_dir: runtime_dir.to_path_buf(),
            python,
            node,
            search_path,
        })
    }

    /// How to start an environment of `runtime` whose code is unpacked at `task_root`, when the
    /// runtime sees the same paths as the host (the `process` sandbox).
    pub fn launch(&self, runtime: Runtime, task_root: &Path) -> Result<LaunchSpec, LaunchError> {
        self.launch_at(
            runtime,
            task_root,
            Placement {
                task_root,
                runtime_dir: &self.runtime_dir,
            },
        )
    }

    /// How to start an environment of `runtime` whose code is unpacked on the host at
    /// `host_task_root` and which the runtime process sees at the paths in `inside` (an isolating
    /// sandbox shows them at `/var/task` and `/var/runtime`). Only the host path is inspected;
    /// every path in the returned spec is an inside path.
    pub fn launch_at(
        &self,
        runtime: Runtime,
        host_task_root: &Path,
        inside: Placement<'_>,
    ) -> Result<LaunchSpec, LaunchError> {
        let task_root = inside.task_root;
        match runtime.family() {
            RuntimeFamily::Python => {
                let program = self.interpreter(&self.python, runtime, "python")?;
                Ok(LaunchSpec {
                    program,
                    args: vec![
                        "-S".into(),
                        inside
                            .runtime_dir
                            .join(PYTHON_BOOTSTRAP_PATH)
                            .into_os_string(),
                    ],
                    env: vec![("PYTHONUNBUFFERED".into(), "1".into())],
                })
            }
            RuntimeFamily::Node => {
                let program = self.interpreter(&self.node, runtime, "node")?;
                let node_path = format!(
                    "/opt/nodejs/node_modules:{}:{}",
                    task_root.join("node_modules").display(),
                    task_root.display()
                );
                Ok(LaunchSpec {
                    program,
                    args: vec![inside
                        .runtime_dir
                        .join(NODE_BOOTSTRAP_PATH)
                        .into_os_string()],
                    env: vec![("NODE_PATH".into(), node_path)],
                })
            }
            RuntimeFamily::Provided => {
                let program = task_root.join("bootstrap");
                if !is_executable_file(&host_task_root.join("bootstrap")) {
                    return Err(LaunchError::InvalidEntrypoint { path: program });
                }
                Ok(LaunchSpec {
                    program,
                    args: Vec::new(),
                    env: Vec::new(),
                })
            }
        }
    }

    /// The install prefixes of the interpreters (`/root/.pyenv/versions/3.11.7` for
    /// `.../bin/python3`): what an isolating sandbox must show read-only at the same path for
    /// them to start.
    pub fn install_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [&self.python, &self.node]
            .into_iter()
            .filter_map(|i| match i {
                Interpreter::Found(p) => {
                    let real = fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                    real.parent()?.parent().map(Path::to_path_buf)
                }
                Interpreter::Missing(_) => None,
            })
            .filter(|d| d.parent().is_some())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// The directory holding the bootstraps; becomes `LAMBDA_RUNTIME_DIR`.
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// `PATH` for environments: the real python's directory, node's directory, then
    /// `/usr/local/bin:/usr/bin:/bin`, without duplicates.
    pub fn search_path(&self) -> &str {
        &self.search_path
    }

    fn interpreter(
        &self,
        which: &Interpreter,
        runtime: Runtime,
        program: &'static str,
    ) -> Result<PathBuf, LaunchError> {
        match which {
            Interpreter::Found(p) => Ok(p.clone()),
            Interpreter::Missing(reason) => Err(LaunchError::InterpreterMissing {
                runtime,
                program,
                reason: reason.clone(),
            }),
        }
    }
}

fn check_executable(path: PathBuf, var: &str) -> Interpreter {
    if is_executable_file(&path) {
        Interpreter::Found(path)
    } else {
        Interpreter::Missing(format!(
            "{var}={} is not an executable file",
            path.display()
        ))
    }
}

/// Asks `python3` on `PATH` for `sys.executable`: resolves pyenv-style shims to the real binary.
/// Not canonicalized: a virtualenv's interpreter is a symlink whose location matters.
fn probe_python(path_var: &std::ffi::OsStr) -> Interpreter {
    let Some(python3) = find_on_path("python3", path_var) else {
        return Interpreter::Missing("`python3` not found on PATH".into());
    };
    let out = match Command::new(&python3)
        .args(["-c", "import sys; print(sys.executable)"])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) => return Interpreter::Missing(format!("failed to run {}: {e}", python3.display())),
    };
    if !out.status.success() {
        return Interpreter::Missing(format!(
            "{} exited with {}: {}",
            python3.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if exe.is_empty() {
        // sys.executable can be empty in odd embeddings; the shim itself still works.
        return Interpreter::Found(python3);
    }
    check_executable(PathBuf::from(exe), "sys.executable")
}

/// Compiles the Python runtime's bytecode into `__pycache__` now, so environments find it even
/// when they cannot write the runtime directory. Best effort: without it the first environment
/// that can write there caches it, or each start compiles it.
fn precompile_python(python: &Path, source: &Path) {
    let result = Command::new(python)
        .args([
            "-S",
            "-c",
            "import py_compile, sys; py_compile.compile(sys.argv[1], doraise=True)",
        ])
        .arg(source)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output();
    match result {
        Ok(out) if out.status.success() => {}
        Ok(out) => tracing::debug!(
            python = %python.display(),
            stderr = %String::from_utf8_lossy(&out.stderr).trim(),
            "runtimes.discover could not precompile the python runtime"
        ),
        Err(e) => tracing::debug!(
            python = %python.display(),
            error = %e,
            "runtimes.discover could not precompile the python runtime"
        ),
    }
}

fn find_on_path(name: &str, path_var: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| is_executable_file(p))
}

fn is_executable_file(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

fn build_search_path<'a>(dirs: impl IntoIterator<Item = Option<&'a Path>>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let interpreter_dirs = dirs
        .into_iter()
        .flatten()
        .filter_map(|p| p.parent())
        .map(|d| d.display().to_string());
    let base = BASE_SEARCH_PATH.split(':').map(str::to_owned);
    for d in interpreter_dirs.chain(base) {
        if !d.is_empty() && !parts.contains(&d) {
            parts.push(d);
        }
    }
    parts.join(":")
}

fn write_bootstraps(runtime_dir: &Path) -> Result<(), RuntimeError> {
    for (rel, content) in [
        (PYTHON_BOOTSTRAP_PATH, PYTHON_BOOTSTRAP),
        (PYTHON_RUNTIME_PATH, PYTHON_RUNTIME),
        (NODE_BOOTSTRAP_PATH, NODE_BOOTSTRAP),
    ] {
        write_if_changed(&runtime_dir.join(rel), content.as_bytes())?;
    }
    Ok(())
}

/// Writes `content` to `path` via a temporary file and a rename, only when it differs, so the
/// file's mtime (and Python's bytecode cache keyed on it) stays put across restarts.
fn write_if_changed(path: &Path, content: &[u8]) -> Result<(), RuntimeError> {
    if fs::read(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    let dir = path.parent().expect("bootstrap paths have a parent");
    fs::create_dir_all(dir).map_err(|source| RuntimeError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let wrap = |source| RuntimeError::WriteBootstrap {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .expect("bootstrap paths have a file name")
        .to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(0o644))?;
        }
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(wrap(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Tests that change SERVAL_PYTHON / SERVAL_NODE run one at a time.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    fn fake_interpreter(dir: &Path, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn with_overrides<T>(python: Option<&Path>, node: Option<&Path>, f: impl FnOnce() -> T) -> T {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY-free in edition 2021; the lock keeps these tests from racing each other.
        match python {
            Some(p) => std::env::set_var(PYTHON_ENV, p),
            None => std::env::remove_var(PYTHON_ENV),
        }
        match node {
            Some(p) => std::env::set_var(NODE_ENV, p),
            None => std::env::remove_var(NODE_ENV),
        }
        let out = f();
        std::env::remove_var(PYTHON_ENV);
        std::env::remove_var(NODE_ENV);
        out
    }

    #[test]
    fn discovers_interpreters_from_overrides() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        let nbin = tmp.path().join("nbin");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(&nbin).unwrap();
        let py = fake_interpreter(&bin, "python3.12");
        let node = fake_interpreter(&nbin, "node");
        let rt = tmp.path().join("rt");
        let set = with_overrides(Some(&py), Some(&node), || RuntimeSet::discover(&rt)).unwrap();
        assert_eq!(set.runtime_dir(), rt);
        assert_eq!(
            set.search_path(),
            format!(
                "{}:{}:/usr/local/bin:/usr/bin:/bin",
                bin.display(),
                nbin.display()
            )
        );
        let spec = set
            .launch(Runtime::Python312, Path::new("/var/task"))
            .unwrap();
        assert_eq!(spec.program, py);
        assert_eq!(
            spec.args,
            vec![
                OsString::from("-S"),
                rt.join("python/bootstrap.py").into_os_string()
            ]
        );
        assert!(spec.env.contains(&("PYTHONUNBUFFERED".into(), "1".into())));
        let spec = set
            .launch(Runtime::Nodejs20, Path::new("/var/task"))
            .unwrap();
        assert_eq!(spec.program, node);
        assert_eq!(
            spec.args,
            vec![rt.join("node/bootstrap.cjs").into_os_string()]
        );
        assert!(spec
            .env
            .iter()
            .any(|(k, v)| k == "NODE_PATH" && v.ends_with(":/var/task")));
    }

    #[test]
    fn deduplicates_search_path_when_interpreters_share_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let py = fake_interpreter(tmp.path(), "python3");
        let node = fake_interpreter(tmp.path(), "node");
        let set = with_overrides(Some(&py), Some(&node), || {
            RuntimeSet::discover(&tmp.path().join("rt"))
        })
        .unwrap();
        assert_eq!(
            set.search_path(),
            format!("{}:/usr/local/bin:/usr/bin:/bin", tmp.path().display())
        );
        assert_eq!(
            build_search_path([Some(Path::new("/usr/bin/python3")), None]),
            "/usr/bin:/usr/local/bin:/bin"
        );
    }

    #[test]
    fn reports_missing_interpreter_on_launch() {
        let tmp = tempfile::tempdir().unwrap();
        let not_exec = tmp.path().join("python3");
        fs::write(&not_exec, "").unwrap();
        let node = fake_interpreter(tmp.path(), "node");
        let set = with_overrides(Some(&not_exec), Some(&node), || {
            RuntimeSet::discover(&tmp.path().join("rt"))
        })
        .unwrap();
        let err = set
            .launch(Runtime::Python311, Path::new("/var/task"))
            .unwrap_err();
        assert!(matches!(err, LaunchError::InterpreterMissing { .. }));
        assert!(err.to_string().contains("SERVAL_PYTHON"), "{err}");
        assert!(set.launch(Runtime::Nodejs22, Path::new("/x")).is_ok());
    }

    #[test]
    fn rejects_provided_package_without_executable_bootstrap() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let set = RuntimeSet {
            runtime_dir: tmp.path().join("rt"),
            python: Interpreter::Missing("test".into()),
            node: Interpreter::Missing("test".into()),
            search_path: BASE_SEARCH_PATH.into(),
        };
        let task = tmp.path().join("task");
        fs::create_dir_all(&task).unwrap();
        let err = set.launch(Runtime::ProvidedAl2023, &task).unwrap_err();
        assert_eq!(err.error_type(), "Runtime.InvalidEntrypoint");
        assert_eq!(
            err.to_string(),
            format!(
                "Couldn't find valid bootstrap(s): [{}]",
                task.join("bootstrap").display()
            )
        );
        let bootstrap = task.join("bootstrap");
        fs::write(&bootstrap, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&bootstrap, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(set.launch(Runtime::Provided, &task).is_err());
        fs::set_permissions(&bootstrap, fs::Permissions::from_mode(0o755)).unwrap();
        let spec = set.launch(Runtime::ProvidedAl2, &task).unwrap();
        assert_eq!(spec.program, bootstrap);
        assert!(spec.args.is_empty() && spec.env.is_empty());
    }

    #[test]
    fn launch_at_checks_the_host_and_names_inside_paths() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let set = RuntimeSet {
            runtime_dir: tmp.path().join("rt"),
            python: Interpreter::Missing("test".into()),
            node: Interpreter::Missing("test".into()),
            search_path: BASE_SEARCH_PATH.into(),
        };
        let task = tmp.path().join("task");
        fs::create_dir_all(&task).unwrap();
        let inside = Placement {
            task_root: Path::new("/var/task"),
            runtime_dir: Path::new("/var/runtime"),
        };
        let err = set.launch_at(Runtime::Provided, &task, inside).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Couldn't find valid bootstrap(s): [/var/task/bootstrap]"
        );
        let bootstrap = task.join("bootstrap");
        fs::write(&bootstrap, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&bootstrap, fs::Permissions::from_mode(0o755)).unwrap();
        let spec = set.launch_at(Runtime::Provided, &task, inside).unwrap();
        assert_eq!(spec.program, Path::new("/var/task/bootstrap"));
    }

    #[test]
    fn writes_bootstraps_once_and_repairs_changed_files() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = tmp.path().join("runtime");
        write_bootstraps(&rt).unwrap();
        let py = rt.join(PYTHON_BOOTSTRAP_PATH);
        let node = rt.join(NODE_BOOTSTRAP_PATH);
        assert_eq!(fs::read_to_string(&py).unwrap(), PYTHON_BOOTSTRAP);
        assert_eq!(
            fs::read_to_string(rt.join(PYTHON_RUNTIME_PATH)).unwrap(),
            PYTHON_RUNTIME
        );
        assert_eq!(fs::read_to_string(&node).unwrap(), NODE_BOOTSTRAP);
        let mtime = fs::metadata(&py).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_bootstraps(&rt).unwrap();
        assert_eq!(fs::metadata(&py).unwrap().modified().unwrap(), mtime);
        fs::write(&node, "tampered").unwrap();
        write_bootstraps(&rt).unwrap();
        assert_eq!(fs::read_to_string(&node).unwrap(), NODE_BOOTSTRAP);
        let leftovers: Vec<_> = fs::read_dir(rt.join("node"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn reports_unwritable_runtime_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        fs::write(&file, "").unwrap();
        let err = write_bootstraps(&file).unwrap_err();
        assert!(matches!(err, RuntimeError::CreateDir { .. }), "{err}");
    }
}
