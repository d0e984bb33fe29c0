//! `serval bench --cold`: how fast Serval creates environments.
//!
//! Against one server:
//! 1. *cold start*: per function kind (`--functions`, default python and node), `--samples`
//!    functions are created and made ready first (not timed); then each is invoked once, one
//!    after another: Invoke request sent → response received, for a function whose
//!    environment does not exist yet;
//! 2. *creation rate*: `--cold-functions` Python functions (default 200) are invoked once
//!    each, all at once; environments made per second of wall time;
//! 3. *parallel cold starts*: `--cold-parallel` invocations (default 100) of one new Python
//!    function at once, each needing its own environment: time until all have answered;
//! 4. *memory*: with those environments idle, the proportional set size (PSS) of every
//!    process below the server, divided by the number of environments (a private server
//!    only: its processes are this machine's).
//!
//! Not for: asserting on speed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use serde::Serialize;

use super::{
    bench_target, clean_up, forget, ms, percentile, remember, BenchArgs, BenchFunction, P50P99,
};
use crate::client::{Client, CreateFunctionInput, Endpoint, FunctionCode, DEFAULT_ROLE};
use crate::cmd::deploy::wait_ready;
use crate::cmd::Spinner;
use crate::table::{Align, Table};

/// Cold-start latency of one function kind.
#[derive(Debug, Serialize)]
pub struct ColdLatency {
    pub function: BenchFunction,
    pub samples: u32,
    pub errors: u32,
    pub cold_start: P50P99,
    pub max_ms: Option<f64>,
}

/// Everything `serval bench --cold` measured.
#[derive(Debug, Serialize)]
pub struct ColdReport {
    pub endpoint: String,
    pub sandbox: String,
    pub latency: Vec<ColdLatency>,
    /// Functions invoked once each, all at once.
    pub creation_functions: u32,
    pub creation_errors: u32,
    pub creation_seconds: f64,
    pub environments_per_s: f64,
    /// Invocations of one new function, all at once.
    pub parallel: u32,
    pub parallel_errors: u32,
    /// Until the last of them answered.
    pub parallel_all_answered_ms: f64,
    /// PSS of the server's descendants divided by the environments (private server only).
    pub pss_per_idle_environment_kib: Option<u64>,
}

/// Runs the cold-start benchmark against `endpoint`, or a private server when `None`.
pub async fn run(endpoint: Option<Endpoint>, args: &BenchArgs) -> anyhow::Result<()> {
    let spinner = Spinner::start("starting a private server");
    let backend = args.sandbox.first().map(String::as_str);
    let (server, endpoint, sandbox) = bench_target(endpoint, backend, &[]).await?;
    let server_pid = server.as_ref().and_then(|s| s.pid());
    let client = Client::new(endpoint.clone());
    let created: Arc<Mutex<Vec<String>>> = Arc::default();
    let result = tokio::select! {
        result = measure(&client, args, &spinner, created.clone(), server_pid) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    spinner.set("cleaning up");
    let stopped = clean_up(&client, &created, server).await;
    drop(spinner);
    let mut report = result?;
    stopped?;
    report.endpoint = endpoint.url();
    report.sandbox = sandbox;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

async fn measure(
    client: &Client,
    args: &BenchArgs,
    spinner: &Spinner,
    created: Arc<Mutex<Vec<String>>>,
    server_pid: Option<u32>,
) -> anyhow::Result<ColdReport> {
    let prefix = format!("serval-bench-{}-cold", std::process::id());
    let deploy = |function: BenchFunction, name: String, zip: Arc<Vec<u8>>| {
        let created = created.clone();
        async move {
            let input = CreateFunctionInput {
                function_name: name.clone(),
                runtime: function.runtime().to_owned(),
                role: DEFAULT_ROLE.to_owned(),
                handler: function.handler().to_owned(),
                code: FunctionCode::from_zip(&zip),
                memory_size: Some(args.memory),
                timeout: Some(30),
                environment: None,
            };
            remember(&created, &name);
            client
                .create_function(&input)
                .await
                .with_context(|| format!("create function {name}"))?;
            wait_ready(client, &name).await?;
            anyhow::Ok(name)
        }
    };

    let mut latency = Vec::new();
    for &function in &args.functions {
        let label = function.label();
        let zip = Arc::new(function.package()?);
        let mut names = Vec::new();
        for i in 0..args.samples {
            spinner.set(format!(
                "{label}: creating function {}/{}",
                i + 1,
                args.samples
            ));
            names.push(deploy(function, format!("{prefix}-{label}-{i}"), zip.clone()).await?);
        }
        let (mut ns, mut errors) = (Vec::new(), 0);
        for (i, name) in names.iter().enumerate() {
            spinner.set(format!("{label}: cold start {}/{}", i + 1, args.samples));
            let sent = Instant::now();
            match client.invoke(name, Bytes::from_static(b"{}"), false).await {
                Ok(out) if out.function_error.is_none() => {
                    ns.push(sent.elapsed().as_nanos() as u64)
                }
                _ => errors += 1,
            }
        }
        ns.sort_unstable();
        latency.push(ColdLatency {
            function,
            samples: args.samples,
            errors,
            cold_start: P50P99 {
                p50_ms: ms(percentile(&ns, 0.5)),
                p99_ms: ms(percentile(&ns, 0.99)),
            },
            max_ms: ms(ns.last().map(|&n| Duration::from_nanos(n))),
        });
        delete_all(client, &created, &names, spinner, label).await;
    }

    // Many functions, once each, all at once.
    let python = Arc::new(BenchFunction::Python.package()?);
    let mut names = Vec::new();
    for i in 0..args.cold_functions {
        spinner.set(format!(
            "creation rate: creating function {}/{}",
            i + 1,
            args.cold_functions
        ));
        names.push(
            deploy(
                BenchFunction::Python,
                format!("{prefix}-many-{i}"),
                python.clone(),
            )
            .await?,
        );
    }
    spinner.set(format!(
        "creation rate: invoking {} functions at once",
        names.len()
    ));
    let started = Instant::now();
    let results = invoke_all(client, names.iter().map(String::as_str)).await;
    let creation_seconds = started.elapsed().as_secs_f64();
    let creation_errors = results.iter().filter(|ok| !**ok).count() as u32;
    delete_all(client, &created, &names, spinner, "creation rate").await;

    // One function, many invocations at once.
    spinner.set("parallel cold starts: deploying");
    let one = deploy(
        BenchFunction::Python,
        format!("{prefix}-parallel"),
        python.clone(),
    )
    .await?;
    spinner.set(format!(
        "parallel cold starts: {} at once",
        args.cold_parallel
    ));
    let started = Instant::now();
    let results = invoke_all(client, (0..args.cold_parallel).map(|_| one.as_str())).await;
    let parallel_all_answered = started.elapsed();
    let parallel_errors = results.iter().filter(|ok| !**ok).count() as u32;
    let environments = args.cold_parallel - parallel_errors;
    spinner.set("memory: reading PSS");
    let pss = match server_pid {
        Some(pid) if environments > 0 => {
            // Idle environments have settled (and, in the linux sandbox, may be frozen).
            tokio::time::sleep(Duration::from_millis(500)).await;
            let total = tokio::task::spawn_blocking(move || descendants_pss_kib(pid))
                .await
                .context("read PSS")??;
            Some(total / u64::from(environments))
        }
        _ => None,
    };
    Ok(ColdReport {
        endpoint: String::new(),
        sandbox: String::new(),
        latency,
        creation_functions: args.cold_functions,
        creation_errors,
        creation_seconds: (creation_seconds * 1000.0).round() / 1000.0,
        environments_per_s: super::rate(
            u64::from(args.cold_functions - creation_errors),
            Duration::from_secs_f64(creation_seconds),
        ),
        parallel: args.cold_parallel,
        parallel_errors,
        parallel_all_answered_ms: (parallel_all_answered.as_secs_f64() * 1e6).round() / 1e3,
        pss_per_idle_environment_kib: pss,
    })
}

/// Invokes each of `names` once, all at once; whether each succeeded.
async fn invoke_all<'a>(client: &Client, names: impl Iterator<Item = &'a str>) -> Vec<bool> {
    let calls = names.map(|name| {
        let client = client.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            matches!(
                client.invoke(&name, Bytes::from_static(b"{}"), false).await,
                Ok(out) if out.function_error.is_none()
            )
        })
    });
    let handles: Vec<_> = calls.collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap_or(false));
    }
    out
}

async fn delete_all(
    client: &Client,
    created: &Mutex<Vec<String>>,
    names: &[String],
    spinner: &Spinner,
    label: &str,
) {
    spinner.set(format!("{label}: deleting {} functions", names.len()));
    for name in names {
        forget(created, name);
        client.delete_function(name).await.ok();
    }
}

/// Sum of `Pss` (KiB) over every process descending from `root` (not `root` itself).
fn descendants_pss_kib(root: u32) -> anyhow::Result<u64> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").context("list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut total = 0;
    let mut stack = children.get(&root).cloned().unwrap_or_default();
    while let Some(pid) = stack.pop() {
        if let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            total += rollup
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        if let Some(more) = children.get(&pid) {
            stack.extend(more);
        }
    }
    Ok(total)
}

fn render(report: &ColdReport) -> String {
    let mut out = format!(
        "Cold-start benchmark: {} (sandbox {})\n\n",
        report.endpoint, report.sandbox
    );
    let mut table = Table::new(&[
        ("function", Align::Left),
        ("samples", Align::Right),
        ("errors", Align::Right),
        ("p50", Align::Right),
        ("p99", Align::Right),
        ("max", Align::Right),
    ]);
    for l in &report.latency {
        table.row(vec![
            l.function.label().to_owned(),
            l.samples.to_string(),
            l.errors.to_string(),
            super::fmt_ms(l.cold_start.p50_ms),
            super::fmt_ms(l.cold_start.p99_ms),
            super::fmt_ms(l.max_ms),
        ]);
    }
    out.push_str(&table.render());
    out.push_str(&format!(
        "\n{} Python functions invoked once each, all at once: {:.2} s, {:.0} environments/s ({} errors)\n",
        report.creation_functions, report.creation_seconds, report.environments_per_s, report.creation_errors
    ));
    out.push_str(&format!(
        "{} parallel cold starts of one Python function: all answered after {:.1} ms ({} errors)\n",
        report.parallel, report.parallel_all_answered_ms, report.parallel_errors
    ));
    match report.pss_per_idle_environment_kib {
        Some(kib) => out.push_str(&format!(
            "PSS per idle Python environment: {:.1} MiB\n",
            kib as f64 / 1024.0
        )),
        None => out.push_str("PSS per idle environment: - (needs a private server)\n"),
    }
    out
}
