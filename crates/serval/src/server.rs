//! `serval server`: opens the store, starts the engine and serves every AWS surface on one
//! address until SIGINT or SIGTERM, then drains in-flight invocations.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use serval_engine::{Engine, EngineConfig};
use serval_runtimes::RuntimeSet;
use serval_sandbox::{AnySandbox, ProcessSandbox};
use serval_store::Store;

/// Sandbox backends `serval server` can use.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SandboxKind {
    /// A plain child process group: no isolation, for development.
    Process,
}

/// Options of `serval server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Where state lives [default: $SERVAL_DATA_DIR, else $XDG_DATA_HOME/serval, else ~/.local/share/serval].
    #[arg(long, env = "SERVAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Region reported in ARNs and to functions.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Seconds an idle environment is kept warm before it is destroyed.
    #[arg(long, default_value_t = 600.0)]
    pub keep_alive: f64,
    /// Account-wide limit on concurrently running invocations.
    #[arg(long, default_value_t = serval_model::limits::ACCOUNT_CONCURRENCY_DEFAULT)]
    pub max_concurrency: u32,
    /// Days function logs are kept.
    #[arg(long, default_value_t = 30)]
    pub log_retention_days: u32,
    /// Sandbox backend for execution environments.
    #[arg(long, value_enum, default_value = "process")]
    pub sandbox: SandboxKind,
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("serval"));
    }
    let home = std::env::var_os("HOME").context(
        "find a data directory: neither --data-dir, SERVAL_DATA_DIR, XDG_DATA_HOME nor HOME is set",
    )?;
    Ok(PathBuf::from(home).join(".local/share/serval"))
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("create data directory {}", data_dir.display()))?;
    let store = {
        let dir = data_dir.clone();
        tokio::task::spawn_blocking(move || Store::open(&dir))
            .await?
            .context("open metadata store")?
    };
    let runtimes = {
        let dir = data_dir.join("runtime");
        tokio::task::spawn_blocking(move || RuntimeSet::discover(&dir))
            .await?
            .context("prepare runtimes")?
    };
    let envs_dir = data_dir.join("envs");
    // Scratch directories of environments from a previous run are garbage now.
    if envs_dir.exists() {
        let dir = envs_dir.clone();
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir))
            .await?
            .context("remove stale environment directories")?;
    }
    let sandbox = match args.sandbox {
        SandboxKind::Process => {
            tracing::warn!("sandbox backend: process — functions run WITHOUT isolation, as the server's user; for development only");
            AnySandbox::Process(ProcessSandbox::new().context("start process sandbox")?)
        }
    };
    let mut config = EngineConfig::new(args.region.clone(), envs_dir);
    config.keep_alive = Duration::from_secs_f64(args.keep_alive.max(0.0));
    config.max_concurrency = args.max_concurrency;
    let retention = Duration::from_secs(u64::from(args.log_retention_days) * 86_400);
    let engine = Engine::new(
        config,
        sandbox,
        Arc::new(runtimes),
        store.clone(),
        retention,
    )
    .context("start engine")?;
    let functions = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.all_functions())
            .await?
            .context("load functions")?
    };
    let count = functions.len();
    for f in functions {
        engine.deploy(f);
    }

    let app = serval_api::router(serval_api::ApiState {
        engine: engine.clone(),
        store,
        region: args.region,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let addr = listener.local_addr().context("read listening address")?;
    tracing::info!(%addr, data_dir = %data_dir.display(), functions = count, "serval started");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "serval listening on http://{addr}").context("write start-up line")?;
        out.flush().context("write start-up line")?;
    }
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serve http")?;
    tracing::info!("stopping: draining in-flight invocations");
    engine.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
