//! A throw-away `serval server` for `serval bench`: this same binary on `127.0.0.1:0` with a
//! temporary data directory, stopped (SIGTERM, then SIGKILL) when the benchmark ends.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::client::Endpoint;

/// How long the server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The line prefix `serval server` prints on stdout once it accepts connections.
const LISTENING_PREFIX: &str = "serval listening on ";
/// The line prefix naming the sandbox backend, printed before the listening line.
const SANDBOX_PREFIX: &str = "serval sandbox: ";

/// A running private server.
pub struct PrivateServer {
    child: Child,
    endpoint: Endpoint,
    /// The backend the server reported (`linux`, `process`).
    sandbox: String,
    log_path: PathBuf,
    /// Removed on drop, after the server has stopped.
    _dir: tempfile::TempDir,
}

impl PrivateServer {
    /// Starts `current_exe() server --listen 127.0.0.1:0 --data-dir <tempdir>/data` and waits for
    /// its listening line. Its log goes to `<tempdir>/server.log` (level `warn` unless
    /// `RUST_LOG` says otherwise).
    /// `sandbox` picks the backend (`--sandbox`); `None` leaves the server's default. `extra`
    /// are further `serval server` flags.
    pub async fn start(sandbox: Option<&str>, extra: &[&str]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("find the serval binary")?;
        let dir = tempfile::Builder::new()
            .prefix("serval-bench-")
            .tempdir()
            .context("create a temporary directory for the private server")?;
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let mut command = Command::new(&exe);
        command
            .arg("server")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(sandbox.map(|s| ["--sandbox", s]).into_iter().flatten())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("start {} server", exe.display()))?;
        let stdout = child
            .stdout
            .take()
            .expect("stdout was configured as a pipe");
        let mut lines = BufReader::new(stdout).lines();
        let mut backend = String::from("unknown");
        let wait_for_line = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.trim().strip_prefix(SANDBOX_PREFIX) {
                    backend = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or("unknown")
                        .to_owned();
                }
                if let Some(url) = line.trim().strip_prefix(LISTENING_PREFIX) {
                    return Ok::<_, std::io::Error>(Some(url.to_owned()));
                }
            }
            Ok(None)
        };
        let url = match tokio::time::timeout(START_TIMEOUT, wait_for_line).await {
            Ok(Ok(Some(url))) => url,
            Ok(Ok(None)) | Ok(Err(_)) => {
                let _ = child.wait().await;
                anyhow::bail!(
                    "the private server exited before listening; its log:\n{}",
                    log_tail(&log_path)
                );
            }
            Err(_) => {
                let _ = child.kill().await;
                anyhow::bail!(
                    "the private server did not start within {} s; its log:\n{}",
                    START_TIMEOUT.as_secs(),
                    log_tail(&log_path)
                );
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let endpoint = Endpoint::parse(&url)
            .with_context(|| format!("read the private server's address from {url:?}"))?;
        Ok(Self {
            child,
            endpoint,
            sandbox: backend,
            log_path,
            _dir: dir,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The server's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The sandbox backend the server said it uses.
    pub fn sandbox(&self) -> &str {
        &self.sandbox
    }

    /// Stops the server: SIGTERM so it tears its environments down, SIGKILL if it lingers.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            // Through kill(1): the binary keeps `unsafe` out of this crate.
            let signalled = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !signalled {
                self.child.kill().await.context("kill the private server")?;
                return Ok(());
            }
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                status.context("wait for the private server")?;
                Ok(())
            }
            Err(_) => {
                self.child.kill().await.context("kill the private server")?;
                anyhow::bail!(
                    "the private server did not stop within {} s of SIGTERM and was killed; its log:\n{}",
                    STOP_TIMEOUT.as_secs(),
                    log_tail(&self.log_path)
                )
            }
        }
    }
}

/// The last lines of the server's log, for error messages.
fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(20)..];
    if tail.is_empty() {
        "(empty)".to_owned()
    } else {
        tail.join("\n")
    }
}
