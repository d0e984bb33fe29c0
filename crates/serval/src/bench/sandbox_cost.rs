//! `serval bench --sandbox-cost`: what a sandbox backend itself costs, measured in this process
//! with no server and no runtime: creating an environment (until its program was exec'd),
//! freezing and thawing it, and destroying it (until the backend cleaned up after it). The
//! program is `/usr/bin/sleep`, so nothing of a language runtime is in the figures.
//!
//! The `linux` backend needs root; without it, its rows are skipped with the reason.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use serval_model::EnvironmentId;
use serval_sandbox::{
    AnySandbox, LinuxConfig, LinuxSandbox, NetworkMode, ProcessSandbox, Sandbox, SandboxControl,
    SandboxInstance, SandboxSpec,
};

use super::load::percentile;
use super::{fmt_ms, ms, BenchArgs, P50P99};
use crate::table::{Align, Table};

/// One backend's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxCost {
    pub sandbox: String,
    pub samples: u32,
    /// From asking for an environment to its program running.
    pub create: P50P99,
    /// One freeze request (the engine's idle freeze).
    pub freeze: P50P99,
    /// One thaw request (on the next invocation's path).
    pub thaw: P50P99,
    /// From kill to the environment fully cleaned up.
    pub destroy: P50P99,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("serval-bench-sandbox-")
        .tempdir()
        .context("create a temporary directory")?;
    let task = work.path().join("task");
    std::fs::create_dir_all(&task).context("create the task directory")?;
    let mut costs = Vec::new();
    let mut skipped = Vec::new();
    let process = AnySandbox::Process(ProcessSandbox::new().context("start process sandbox")?);
    costs.push(measure("process", &process, args.samples, &task).await?);
    for network in [NetworkMode::Host, NetworkMode::None] {
        let config = LinuxConfig {
            network,
            rootfs: None,
            extra_dirs: Vec::new(),
            work_dir: work.path().join(format!("linux-{}", network.name())),
            pids_max: serval_sandbox::linux::DEFAULT_PIDS_MAX,
        };
        let name = format!("linux (network {})", network.name());
        match tokio::task::spawn_blocking(move || LinuxSandbox::new(config)).await? {
            Ok(linux) => {
                let linux = AnySandbox::Linux(linux);
                costs.push(measure(&name, &linux, args.samples, &task).await?);
                linux.shutdown().await;
            }
            Err(reason) => skipped.push(format!("{name}: {reason}")),
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&costs).expect("a report serializes")
        );
        return Ok(());
    }
    println!(
        "serval bench --sandbox-cost: {} environments per backend running /usr/bin/sleep\n",
        args.samples
    );
    let mut table = Table::new(&[
        ("SANDBOX", Align::Left),
        ("CREATE P50", Align::Right),
        ("P99", Align::Right),
        ("DESTROY P50", Align::Right),
        ("P99", Align::Right),
        ("FREEZE P50", Align::Right),
        ("THAW P50", Align::Right),
        ("P99", Align::Right),
    ]);
    for c in &costs {
        table.row(vec![
            c.sandbox.clone(),
            fmt_ms(c.create.p50_ms),
            fmt_ms(c.create.p99_ms),
            fmt_ms(c.destroy.p50_ms),
            fmt_ms(c.destroy.p99_ms),
            fmt_ms(c.freeze.p50_ms),
            fmt_ms(c.thaw.p50_ms),
            fmt_ms(c.thaw.p99_ms),
        ]);
    }
    print!("{}", table.render());
    for s in skipped {
        println!("skipped {s}");
    }
    Ok(())
}

async fn measure(
    name: &str,
    sandbox: &AnySandbox,
    samples: u32,
    task: &std::path::Path,
) -> anyhow::Result<SandboxCost> {
    let (mut create, mut freeze, mut thaw, mut destroy) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let nanos = |d: Duration| d.as_nanos() as u64;
    for _ in 0..samples {
        let started = Instant::now();
        let endpoint = sandbox
            .endpoint()
            .await
            .context("open a runtime api socket")?;
        let (_reader, writer) = std::io::pipe().context("create a pipe")?;
        let spec = SandboxSpec {
            env_id: EnvironmentId::next(),
            program: "/usr/bin/sleep".into(),
            args: vec!["1000".into()],
            env: Vec::new(),
            task_root: task.to_owned(),
            runtime_dir: task.to_owned(),
            tmp_dir: task.to_owned(),
            memory_mb: 128,
            ephemeral_storage_mb: 512,
            output: writer.into(),
            network: endpoint.network,
        };
        let mut instance = sandbox
            .spawn(spec)
            .await
            .with_context(|| format!("start an environment in the {name} sandbox"))?;
        create.push(nanos(started.elapsed()));
        let control = instance.control();
        if name != "process" {
            let t = Instant::now();
            control.freeze().context("freeze")?;
            freeze.push(nanos(t.elapsed()));
            let t = Instant::now();
            control.thaw().context("thaw")?;
            thaw.push(nanos(t.elapsed()));
        }
        let t = Instant::now();
        control.kill();
        instance.wait().await;
        drop(instance);
        sandbox.settled().await;
        destroy.push(nanos(t.elapsed()));
    }
    let p = |v: &mut Vec<u64>| {
        v.sort_unstable();
        P50P99 {
            p50_ms: ms(percentile(v, 0.5)),
            p99_ms: ms(percentile(v, 0.99)),
        }
    };
    Ok(SandboxCost {
        sandbox: name.to_owned(),
        samples,
        create: p(&mut create),
        freeze: p(&mut freeze),
        thaw: p(&mut thaw),
        destroy: p(&mut destroy),
    })
}
