//! The `process` backend: no isolation, for development on any Unix.
//!
//! Each environment is a child process in its own process group, started with a clean
//! environment and the code directory as working directory, its stdout and stderr on the log
//! pipe. Ending the environment (or dropping its instance) kills the whole group. The runtime
//! process also gets `PR_SET_PDEATHSIG`, so the server's death (even `kill -9`) takes the runtime
//! with it; since that signal is tied to the thread that forked, every spawn happens on one
//! long-lived spawner thread. Processes the runtime itself started survive a `kill -9` of the
//! server in this backend; only a cgroup (the `linux` backend) can catch those.
//! Freezing stops the group with `SIGSTOP`. Memory is the root process's resident set.
//!
//! Not for: isolating anything. A function here sees the host as its user does.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use serval_model::EnvironmentId;
use tokio::sync::oneshot;

use crate::{
    Endpoint, ExitInfo, Layout, MemoryUsage, Network, Sandbox, SandboxControl, SandboxError,
    SandboxInstance, SandboxSpec,
};

struct SpawnJob {
    command: tokio::process::Command,
    reply: oneshot::Sender<io::Result<tokio::process::Child>>,
}

/// The portable backend. Create it inside a Tokio runtime.
pub struct ProcessSandbox {
    jobs: mpsc::Sender<SpawnJob>,
}

impl ProcessSandbox {
    /// Starts the spawner thread. Must be called from within a Tokio runtime.
    pub fn new() -> io::Result<Self> {
        let handle = tokio::runtime::Handle::current();
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("serval-spawner".into())
            .spawn(move || {
                let _guard = handle.enter();
                for mut job in rx {
                    let _ = job.reply.send(job.command.spawn());
                }
            })?;
        Ok(Self { jobs: tx })
    }
}

impl Sandbox for ProcessSandbox {
    type Instance = ProcessInstance;

    fn layout(&self, host: &Layout) -> Layout {
        host.clone()
    }

    fn enforces_memory_limit(&self) -> bool {
        false
    }

    /// The server's loopback on a free port: any local process can reach it (no isolation).
    async fn endpoint(&self) -> Result<Endpoint, SandboxError> {
        loopback_endpoint()
    }

    async fn spawn(&self, spec: SandboxSpec) -> Result<ProcessInstance, SandboxError> {
        let env_id = spec.env_id;
        let spawn_error = |source| SandboxError::Spawn {
            env_id,
            program: spec.program.display().to_string(),
            source,
        };
        let stderr = spec.output.try_clone().map_err(spawn_error)?;
        let server_pid = std::process::id() as i32;
        let exec = ExecImage::new(&spec).map_err(spawn_error)?;
        let mut command = std::process::Command::new(&spec.program);
        command
            .args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.task_root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(spec.output))
            .stderr(Stdio::from(stderr))
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (prctl, getppid, _exit semantics via error return).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The server may have died between fork and prctl (then the child was
                // re-parented). Compared with the server's pid, not 1: the server may be pid 1.
                if libc::getppid() != server_pid {
                    return Err(io::Error::from(io::ErrorKind::BrokenPipe));
                }
                // Exec here, with execve: std would use execvp, which runs a file the kernel
                // refuses (ENOEXEC: no shebang, a broken binary) through /bin/sh instead of
                // failing. On success this never returns.
                Err(exec.execve())
            });
        }
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let (reply, response) = oneshot::channel();
        self.jobs
            .send(SpawnJob { command, reply })
            .map_err(|_| SandboxError::BackendGone { env_id })?;
        let child = response
            .await
            .map_err(|_| SandboxError::BackendGone { env_id })?
            .map_err(spawn_error)?;
        let pid = child
            .id()
            .expect("a child that was just spawned has not been reaped") as i32;
        Ok(ProcessInstance {
            child,
            control: ProcessControl {
                env_id,
                pgid: pid,
                reaped: Arc::new(AtomicBool::new(false)),
            },
        })
    }
}

/// A Runtime API socket on the server's own loopback, on a port the kernel picks.
pub(crate) fn loopback_endpoint() -> Result<Endpoint, SandboxError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| SandboxError::Endpoint { source })?;
    let address = listener
        .local_addr()
        .map_err(|source| SandboxError::Endpoint { source })?;
    Ok(Endpoint {
        listener,
        address,
        network: Network::Host,
    })
}

/// The program, arguments and environment of one exec, as C strings built before the fork
/// (allocating in the child of a multi-threaded process is not safe).
pub(crate) struct ExecImage {
    _strings: Vec<std::ffi::CString>,
    program: *const libc::c_char,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into `_strings`, which the struct owns and never mutates; the
// heap buffers of a `CString` do not move when the struct moves.
unsafe impl Send for ExecImage {}
unsafe impl Sync for ExecImage {}

impl ExecImage {
    pub(crate) fn new(spec: &SandboxSpec) -> io::Result<Self> {
        use std::os::unix::ffi::OsStrExt;
        let c = |bytes: &[u8]| {
            std::ffi::CString::new(bytes).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in exec argument")
            })
        };
        let program = c(spec.program.as_os_str().as_bytes())?;
        let mut args = vec![c(spec.program.as_os_str().as_bytes())?];
        for a in &spec.args {
            args.push(c(a.as_bytes())?);
        }
        let mut env = Vec::with_capacity(spec.env.len());
        for (k, v) in &spec.env {
            env.push(c(format!("{k}={v}").as_bytes())?);
        }
        let program_ptr = program.as_ptr();
        let argv: Vec<_> = args
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let envp: Vec<_> = env
            .iter()
            .map(|e| e.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let mut strings = vec![program];
        strings.extend(args);
        strings.extend(env);
        Ok(Self {
            _strings: strings,
            program: program_ptr,
            argv,
            envp,
        })
    }

    /// Replaces the calling process; returns only the error if the kernel refuses.
    ///
    /// # Safety
    /// Call only in a forked child, right before it would exec anyway.
    pub(crate) unsafe fn execve(&self) -> io::Error {
        libc::execve(self.program, self.argv.as_ptr(), self.envp.as_ptr());
        io::Error::last_os_error()
    }
}

/// A running environment of the `process` backend.
pub struct ProcessInstance {
    child: tokio::process::Child,
    control: ProcessControl,
}

impl ProcessInstance {
    /// The root process's id (also the process group id).
    pub fn pid(&self) -> i32 {
        self.control.pgid
    }
}

impl Drop for ProcessInstance {
    /// An instance dropped without being waited for (its environment abandoned, the runtime
    /// shutting down) still takes its whole process group with it.
    fn drop(&mut self) {
        self.control.kill();
    }
}

impl SandboxInstance for ProcessInstance {
    type Control = ProcessControl;

    fn control(&self) -> ProcessControl {
        self.control.clone()
    }

    async fn wait(&mut self) -> ExitInfo {
        let status = self.child.wait().await;
        // Whatever the leader left behind in its group goes with it.
        self.control.kill();
        self.control.reaped.store(true, Ordering::Release);
        match status {
            Ok(s) => ExitInfo {
                code: s.code(),
                signal: s.signal(),
                oom_killed: false,
            },
            Err(_) => ExitInfo::unknown(),
        }
    }
}

/// Cloneable control of a `process` environment: signals its process group.
#[derive(Clone, Debug)]
pub struct ProcessControl {
    env_id: EnvironmentId,
    pgid: i32,
    reaped: Arc<AtomicBool>,
}

impl ProcessControl {
    fn signal(&self, sig: i32, action: &'static str) -> Result<(), SandboxError> {
        if self.reaped.load(Ordering::Acquire) {
            return Ok(());
        }
        // SAFETY: killpg has no memory-safety preconditions; the group id is our child's pid,
        // which cannot be reused while the child is unreaped.
        let rc = unsafe { libc::killpg(self.pgid, sig) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(SandboxError::Control {
                env_id: self.env_id,
                action,
                source: err,
            });
        }
        Ok(())
    }
}

impl SandboxControl for ProcessControl {
    fn kill(&self) {
        if let Err(error) = self.signal(libc::SIGKILL, "kill") {
            tracing::warn!(%error, env = %self.env_id, "failed to kill process group");
        }
    }

    fn memory(&self) -> MemoryUsage {
        let path = format!("/proc/{}/status", self.pgid);
        let Ok(status) = std::fs::read_to_string(path) else {
            return MemoryUsage::default();
        };
        parse_status_memory(&status)
    }

    fn freeze(&self) -> Result<(), SandboxError> {
        self.signal(libc::SIGSTOP, "freeze")
    }

    fn thaw(&self) -> Result<(), SandboxError> {
        self.signal(libc::SIGCONT, "thaw")
    }

    /// No CPU limit to lift in this backend.
    fn initialized(&self) {}
}

/// Reads `VmRSS` and `VmHWM` (in kB) from a `/proc/<pid>/status` text.
fn parse_status_memory(status: &str) -> MemoryUsage {
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    MemoryUsage {
        current_bytes: field("VmRSS:"),
        peak_bytes: field("VmHWM:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Whether any process of group `pgid` is still running (zombies waiting for init to reap
    /// them do not count: they run nothing).
    fn group_running(pgid: i32) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                return false;
            };
            // pid (comm) state ppid pgrp ...; comm may contain spaces, so split after ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
        })
    }

    async fn wait_group_gone(pgid: i32) -> bool {
        for _ in 0..200 {
            if !group_running(pgid) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    }

    fn spec(program: &str, args: &[&str], output: std::os::fd::OwnedFd) -> SandboxSpec {
        let dir = std::env::temp_dir();
        SandboxSpec {
            env_id: EnvironmentId::next(),
            program: program.into(),
            args: args.iter().map(Into::into).collect(),
            env: vec![("ONLY".into(), "this".into())],
            task_root: dir.clone(),
            runtime_dir: dir.clone(),
            tmp_dir: dir,
            memory_mb: 128,
            ephemeral_storage_mb: 512,
            output,
            network: Network::Host,
        }
    }

    #[tokio::test]
    async fn runs_with_clean_environment_and_captures_output() {
        let sandbox = ProcessSandbox::new().unwrap();
        let (mut reader, writer) = std::io::pipe().unwrap();
        let mut inst = sandbox
            .spawn(spec(
                "/bin/sh",
                &["-c", "echo out; echo err >&2; env"],
                writer.into(),
            ))
            .await
            .unwrap();
        let exit = inst.wait().await;
        assert_eq!(exit.code, Some(0));
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        assert!(out.contains("out\n") && out.contains("err\n"));
        assert!(out.contains("ONLY=this"));
        assert!(
            !out.contains("HOME="),
            "environment must not be inherited: {out}"
        );
    }

    #[tokio::test]
    async fn kill_ends_the_whole_process_group() {
        let sandbox = ProcessSandbox::new().unwrap();
        let (_reader, writer) = std::io::pipe().unwrap();
        let mut inst = sandbox
            .spawn(spec(
                "/bin/sh",
                &["-c", "sleep 30 & echo $! ; sleep 30"],
                writer.into(),
            ))
            .await
            .unwrap();
        let control = inst.control();
        let pgid = inst.pid();
        control.kill();
        let exit = inst.wait().await;
        assert_eq!(exit.signal, Some(libc::SIGKILL));
        assert_eq!(exit.describe(), "signal: killed");
        assert!(wait_group_gone(pgid).await, "process group {pgid} survived");
        control.kill(); // idempotent after reaping
    }

    #[tokio::test]
    async fn reports_exit_status_and_memory() {
        let sandbox = ProcessSandbox::new().unwrap();
        let (_reader, writer) = std::io::pipe().unwrap();
        let mut inst = sandbox
            .spawn(spec("/bin/sh", &["-c", "sleep 0.2; exit 3"], writer.into()))
            .await
            .unwrap();
        assert!(inst.control().memory().current_bytes > 0);
        let exit = inst.wait().await;
        assert_eq!(exit.describe(), "exit status 3");
    }

    #[tokio::test]
    async fn a_file_the_kernel_cannot_execute_is_a_spawn_error_not_a_shell_script() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = dir.path().join("bootstrap");
        std::fs::write(&bootstrap, "echo ran-by-sh\n").unwrap();
        std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sandbox = ProcessSandbox::new().unwrap();
        let (_reader, writer) = std::io::pipe().unwrap();
        let err = sandbox
            .spawn(spec(bootstrap.to_str().unwrap(), &[], writer.into()))
            .await
            .err()
            .expect("no shebang: exec must fail, not fall back to /bin/sh");
        match err {
            SandboxError::Spawn { source, .. } => {
                assert_eq!(source.raw_os_error(), Some(libc::ENOEXEC))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let sandbox = ProcessSandbox::new().unwrap();
        let (_reader, writer) = std::io::pipe().unwrap();
        let err = sandbox
            .spawn(spec("/nonexistent/bootstrap", &[], writer.into()))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, SandboxError::Spawn { .. }));
    }

    #[tokio::test]
    async fn dropping_an_instance_kills_its_group() {
        let sandbox = ProcessSandbox::new().unwrap();
        let (_reader, writer) = std::io::pipe().unwrap();
        let inst = sandbox
            .spawn(spec(
                "/bin/sh",
                &["-c", "sleep 30 & sleep 30"],
                writer.into(),
            ))
            .await
            .unwrap();
        let pgid = inst.pid();
        assert!(group_running(pgid));
        drop(inst);
        assert!(
            wait_group_gone(pgid).await,
            "process group {pgid} survived its instance"
        );
    }

    #[test]
    fn parses_proc_status_memory() {
        let m = parse_status_memory("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n");
        assert_eq!(m.current_bytes, 1024 * 1024);
        assert_eq!(m.peak_bytes, 2048 * 1024);
    }
}
