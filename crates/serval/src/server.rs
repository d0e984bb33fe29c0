//! `serval server`: opens the store, starts the engine and serves every AWS surface on one
//! address until SIGINT or SIGTERM, then drains in-flight invocations.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use serval_engine::{AsyncConfig, Engine, EngineConfig};
use serval_runtimes::RuntimeSet;
use serval_sandbox::{AnySandbox, LinuxConfig, LinuxSandbox, NetworkMode, ProcessSandbox};
use serval_store::{EventQueue, QueueLimits, Store};

/// Sandbox backends `serval server` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxKind {
    /// `linux` where it can run (Linux, root, cgroups), else `process`.
    Auto,
    /// Namespaces, a read-only root, cgroup limits and freezer, seccomp, an unprivileged user.
    Linux,
    /// A plain child process group: no isolation, for development.
    Process,
}

/// The network functions get in the `linux` sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkKind {
    /// The host's network (the default for local development).
    Host,
    /// Only a loopback of its own: nothing but the Runtime API is reachable.
    None,
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
    #[arg(long, default_value = "us-east-1", value_parser = parse_region)]
    pub region: String,
    /// Seconds an idle environment is kept warm before it is destroyed.
    #[arg(long, default_value = "600", value_parser = parse_keep_alive)]
    pub keep_alive: Duration,
    /// Account-wide limit on concurrently running invocations.
    #[arg(long, default_value_t = serval_model::limits::ACCOUNT_CONCURRENCY_DEFAULT)]
    pub max_concurrency: u32,
    /// Days function logs are kept.
    #[arg(long, default_value_t = 30)]
    pub log_retention_days: u32,
    /// Sandbox backend for execution environments.
    #[arg(long, value_enum, default_value = "auto")]
    pub sandbox: SandboxKind,
    /// Network of functions in the linux sandbox.
    #[arg(long, value_enum, default_value = "host")]
    pub network: NetworkKind,
    /// A root file system (e.g. a debootstrap'd tree) whose /usr, /etc, /bin, /lib* and /sbin
    /// functions see instead of the host's (linux sandbox).
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Milliseconds an environment stays idle before it is frozen (linux sandbox).
    #[arg(long, default_value_t = serval_engine::DEFAULT_FREEZE_GRACE.as_millis() as u64)]
    pub freeze_grace_ms: u64,
    /// Milliseconds a failed asynchronous event waits before its first retry (the second
    /// waits twice as long; throttled events back off from 1/60 of it up to 5 times it).
    /// AWS's is one minute; tests shorten it.
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub async_retry_base_ms: u64,
    /// How many milliseconds one second of `MaximumEventAgeInSeconds` lasts. Real time is
    /// 1000; tests shorten it so event-age expiry happens in seconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub async_event_age_unit_ms: u64,
    /// Most asynchronous events held in the durable queue; further `Event` invocations get 429.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub async_queue_max_events: u64,
    /// Most payload bytes held in the durable queue.
    #[arg(long, default_value_t = 1 << 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub async_queue_max_bytes: u64,
    /// How many times faster than real time scheduled rules' clock runs: 60 makes
    /// `rate(1 minute)` fire every second and a cron minute pass in one. Real time is 1;
    /// tests speed it up.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub schedule_clock_speed: u32,
}

/// Accepts AWS-shaped region names (`us-east-1`, `eu-central-2`, `us-gov-west-1`).
fn parse_region(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].len() == 1
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("'{s}' is not a region name like us-east-1"))
    }
}

/// Seconds, fractional allowed, from 0 to 30 days.
fn parse_keep_alive(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.0..=30.0 * 86_400.0).contains(&secs) {
        return Err(format!(
            "keep-alive must be between 0 and 2592000 seconds, not {s}"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Holds an exclusive lock on the data directory for as long as it lives: two servers on one
/// directory would wipe each other's environments and interleave writes.
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("serval.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another serval server is already using the data directory {} (pass a different --data-dir)",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("lock {}", path.display()))
        }
    }
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
    let data_dir = match args.data_dir.clone() {
        Some(d) => d,
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("create data directory {}", data_dir.display()))?;
    let _lock = lock_data_dir(&data_dir)?;
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
    let (sandbox, why) = choose_sandbox(&args, &data_dir, &runtimes).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "serval sandbox: {} ({why})", sandbox.name())
            .context("write start-up line")?;
        out.flush().context("write start-up line")?;
    }
    let mut config = EngineConfig::new(args.region.clone(), envs_dir);
    config.keep_alive = args.keep_alive;
    config.max_concurrency = args.max_concurrency;
    // Only a cgroup freezer stops a whole environment cleanly; SIGSTOP would be visible to it.
    config.freeze_grace = matches!(sandbox, AnySandbox::Linux(_))
        .then(|| Duration::from_millis(args.freeze_grace_ms));
    let retention = Duration::from_secs(u64::from(args.log_retention_days) * 86_400);
    let engine = Engine::new(
        config,
        sandbox,
        Arc::new(runtimes),
        store.clone(),
        retention,
    )
    .context("start engine")?;
    let count = load_functions(&engine, &store).await?;
    let (queue, leftovers) = {
        let dir = data_dir.clone();
        let limits = QueueLimits {
            max_events: usize::try_from(args.async_queue_max_events).unwrap_or(usize::MAX),
            max_bytes: args.async_queue_max_bytes,
            ..QueueLimits::default()
        };
        tokio::task::spawn_blocking(move || EventQueue::open(&dir, limits))
            .await?
            .context("open the asynchronous event queue")?
    };
    if !leftovers.is_empty() {
        tracing::info!(
            events = leftovers.len(),
            "resuming queued asynchronous events"
        );
    }
    let mut async_config =
        AsyncConfig::with_retry_base(Duration::from_millis(args.async_retry_base_ms));
    async_config.event_age_unit = Duration::from_millis(args.async_event_age_unit_ms);
    engine.start_async(queue, leftovers, async_config);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let addr = listener.local_addr().context("read listening address")?;
    // Triggers report URLs on the port actually bound (`--listen 127.0.0.1:0` picks one).
    let gateway = serval_events::Gateway::new(engine.clone(), args.region.clone(), addr.port());
    load_triggers(&gateway, &store).await?;
    let schedules = serval_events::Schedules::start(
        engine.clone(),
        serval_events::ScheduleConfig {
            region: args.region.clone(),
            clock_speed: args.schedule_clock_speed,
        },
    );
    let rules = load_rules(&schedules, &store).await?;
    let app = serval_api::router(serval_api::ApiState::new(
        engine.clone(),
        store,
        args.region,
        gateway,
        schedules,
    ));
    tracing::info!(%addr, data_dir = %data_dir.display(), functions = count, rules, "serval started");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "serval listening on http://{addr}").context("write start-up line")?;
        out.flush().context("write start-up line")?;
    }
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown({
        let engine = engine.clone();
        async move {
            shutdown_signal().await;
            // At once, not after the HTTP requests in flight: no queued event starts now.
            engine.begin_shutdown();
        }
    })
    .await
    .context("serve http")?;
    tracing::info!("stopping: draining in-flight invocations");
    engine.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Registers every stored function with the engine: `$LATEST`, published versions, aliases
/// and settings. Returns how many functions there are.
async fn load_functions(engine: &Engine, store: &Store) -> anyhow::Result<usize> {
    let store = store.clone();
    let loaded = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        Ok((
            store.all_functions().context("load functions")?,
            store.all_versions().context("load versions")?,
            store.all_aliases().context("load aliases")?,
            store
                .all_reserved_concurrency()
                .context("load reserved concurrency")?,
            store
                .all_event_invoke_configs()
                .context("load event-invoke configs")?,
            store
                .all_provisioned_concurrency()
                .context("load provisioned concurrency")?,
        ))
    })
    .await??;
    let (functions, versions, aliases, reserved, event_configs, provisioned) = loaded;
    let count = functions.len();
    for f in functions {
        engine.deploy(f);
    }
    for v in versions {
        engine.deploy_version(v);
    }
    for a in &aliases {
        engine.set_alias(a);
    }
    for (name, n) in reserved {
        engine.set_reserved_concurrency(&name, Some(n));
    }
    for cfg in event_configs {
        engine.set_event_invoke_config(cfg);
    }
    for p in provisioned {
        engine.set_provisioned_concurrency(&p.function, &p.qualifier, p.requested);
    }
    Ok(count)
}

/// Hands every stored Function URL and HTTP API to the gateway.
async fn load_triggers(gateway: &serval_events::Gateway, store: &Store) -> anyhow::Result<()> {
    let s = store.clone();
    let urls = tokio::task::spawn_blocking(move || s.all_function_urls())
        .await?
        .context("load function URLs")?;
    for url in urls {
        gateway.set_function_url(url);
    }
    let store = store.clone();
    let apis = tokio::task::spawn_blocking(move || store.http_api_snapshots())
        .await?
        .context("load HTTP APIs")?;
    for api in apis {
        gateway.set_api(api);
    }
    Ok(())
}

/// Schedules every stored rule with its targets. Returns how many rules there are.
async fn load_rules(schedules: &serval_events::Schedules, store: &Store) -> anyhow::Result<usize> {
    let store = store.clone();
    let rules = tokio::task::spawn_blocking(move || store.all_rules())
        .await?
        .context("load scheduled rules")?;
    let count = rules.len();
    for (rule, targets) in rules {
        schedules.put_rule(rule, targets);
    }
    Ok(count)
}

/// Picks the sandbox backend and says why, for the start-up line.
async fn choose_sandbox(
    args: &ServerArgs,
    data_dir: &std::path::Path,
    runtimes: &RuntimeSet,
) -> anyhow::Result<(AnySandbox, String)> {
    const WARNING: &str =
        "WARNING: functions run WITHOUT isolation, as the server's user; for development only";
    let process = || -> anyhow::Result<AnySandbox> {
        Ok(AnySandbox::Process(
            ProcessSandbox::new().context("start process sandbox")?,
        ))
    };
    if args.sandbox == SandboxKind::Process {
        tracing::warn!("sandbox backend: process — {WARNING}");
        return Ok((
            process()?,
            format!("chosen with --sandbox process; {WARNING}"),
        ));
    }
    let config = LinuxConfig {
        network: match args.network {
            NetworkKind::Host => NetworkMode::Host,
            NetworkKind::None => NetworkMode::None,
        },
        rootfs: args.rootfs.clone(),
        extra_dirs: runtimes.install_dirs(),
        work_dir: data_dir.join("sandbox"),
        pids_max: serval_sandbox::linux::DEFAULT_PIDS_MAX,
    };
    let linux = match tokio::task::spawn_blocking(move || LinuxSandbox::new(config)).await? {
        Ok(linux) => match linux.self_test().await {
            Ok(()) => Ok(linux),
            Err(e) => {
                // Leave no cgroup behind when not using the backend after all.
                linux.shutdown().await;
                Err(e)
            }
        },
        Err(e) => Err(e),
    };
    match linux {
        Ok(linux) => {
            let why = linux.describe();
            Ok((AnySandbox::Linux(linux), why))
        }
        Err(unavailable) if args.sandbox == SandboxKind::Auto => {
            tracing::warn!(reason = %unavailable, "linux sandbox unavailable; falling back to the process sandbox — {WARNING}");
            Ok((
                process()?,
                format!("linux sandbox unavailable: {unavailable}; {WARNING}"),
            ))
        }
        Err(unavailable) => Err(anyhow::anyhow!("linux sandbox unavailable: {unavailable}")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_region_names() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "ap-southeast-3",
        ] {
            assert!(parse_region(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "us",
            "US-EAST-1",
            "us-east",
            "us-east-12",
            "us east-1",
            "us-east-1\n",
        ] {
            assert!(parse_region(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn validates_keep_alive() {
        assert_eq!(
            parse_keep_alive("1.5").unwrap(),
            Duration::from_millis(1500)
        );
        for bad in ["-1", "inf", "NaN", "x", "9999999999"] {
            assert!(parse_keep_alive(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_second_server_cannot_take_the_same_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data_dir(dir.path()).unwrap();
        let err = lock_data_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("already using"), "{err}");
        drop(first);
        assert!(lock_data_dir(dir.path()).is_ok());
    }
}
