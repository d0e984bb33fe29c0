//! `serval bench`: measures Serval's cold start, warm latency and throughput with two hello-world
//! functions — Python (`python3.12`) and a native `provided.al2023` one whose `bootstrap` runs
//! `serval __hello-runtime` — through the public Lambda API, like any client would.
//!
//! Without `--endpoint` (or `SERVAL_ENDPOINT`) it starts a private server from this binary and
//! stops it at the end. Every phase is bounded in count and time; functions it creates are
//! deleted when it ends (also on Ctrl-C).
//!
//! Not for: asserting on speed (tests never do) or load-testing real functions.

mod async_queue;
mod cold_start;
mod http_trigger;
mod load;
mod private_server;
mod sandbox_cost;

use std::io::{Cursor, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use serde::Serialize;
use zip::write::SimpleFileOptions;

use crate::client::{Client, CreateFunctionInput, Endpoint, FunctionCode, DEFAULT_ROLE};
use crate::cmd::deploy::{is_not_ready, wait_ready};
use crate::cmd::logs::parse_duration;
use crate::cmd::Spinner;
use crate::table::{human_duration, Align, Table};
use load::{percentile, InvokeTemplate, Samples};
use private_server::PrivateServer;

/// How long a cold-start sample keeps retrying an invoke while the new function is not ready.
const READY_WAIT: Duration = Duration::from_secs(60);
/// Invocations each worker makes before a throughput run is measured.
const WARMUP_INVOKES: u32 = 3;
/// The sequential phase stops after this long even if not all invokes were made.
const SEQUENTIAL_TIME_CAP: Duration = Duration::from_secs(60);
/// The Python function's code.
const PYTHON_APP: &str = "def handler(event, context):\n    return {\"ok\": True}\n";

/// The Node.js function's code.
const NODE_APP: &str = "exports.handler = async () => ({ ok: true });\n";

/// Options of `serval bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Measured time of each throughput run (per function and concurrency level).
    #[arg(long, default_value = "5s", value_parser = parse_bench_duration)]
    pub duration: Duration,
    /// Cold-start samples per function (a new function each).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub samples: u32,
    /// Warm sequential invocations per function, on one keep-alive connection.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub invokes: u64,
    /// Concurrency levels of the throughput runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: Vec<u32>,
    /// Which functions to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "python,native")]
    pub functions: Vec<BenchFunction>,
    /// Memory of the benchmark functions in MB (CPU share follows memory).
    #[arg(long, default_value_t = 1024, value_name = "MB")]
    pub memory: u32,
    /// Print one JSON document on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Sandbox backends to compare, comma-separated (`linux,process`): one private server each.
    /// Default: one private server with the server's default backend.
    #[arg(long, value_delimiter = ',', value_parser = ["linux", "process"])]
    pub sandbox: Vec<String>,
    /// Measure the sandbox backends themselves instead (in this process, no server):
    /// environment creation and destruction, freeze and thaw, `--samples` times each.
    #[arg(long)]
    pub sandbox_cost: bool,
    /// Measure asynchronous invocation instead: durable enqueue throughput and ack latency at
    /// each `--concurrency` level, and accept-to-handler-start latency (`--invokes` samples,
    /// at most 2000) with an idle warm function.
    #[arg(long = "async", conflicts_with = "sandbox_cost")]
    pub async_queue: bool,
    /// Measure HTTP triggers instead: latency percentiles and throughput through a Function
    /// URL against a direct Invoke of the same warm function (`--invokes` requests each way,
    /// in interleaved rounds; the `--concurrency` levels for throughput).
    #[arg(long, conflicts_with_all = ["sandbox_cost", "async_queue"])]
    pub http: bool,
    /// Measure environment creation instead: cold-start latency of `--samples` new functions
    /// per `--functions` kind (e.g. `--functions python,node`), environments made per second
    /// when `--cold-functions` functions are invoked once each at once, `--cold-parallel`
    /// simultaneous cold starts of one function, and PSS per idle environment.
    #[arg(long, conflicts_with_all = ["sandbox_cost", "async_queue", "http"])]
    pub cold: bool,
    /// Functions invoked once each, all at once, by `--cold`.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub cold_functions: u32,
    /// Simultaneous invocations of one new function by `--cold`.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub cold_parallel: u32,
}

fn parse_bench_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(600) {
        return Err(format!("{s:?} is out of range: use 100ms to 10m"));
    }
    Ok(d)
}

/// The hello-world functions `bench` can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchFunction {
    /// `python3.12`, `app.handler` returning `{"ok": true}`.
    Python,
    /// `provided.al2023`, a `bootstrap` running `serval __hello-runtime`.
    Native,
    /// `nodejs20.x`, `index.handler` returning `{ok: true}`.
    Node,
}

impl BenchFunction {
    fn label(self) -> &'static str {
        match self {
            BenchFunction::Python => "python",
            BenchFunction::Native => "native",
            BenchFunction::Node => "node",
        }
    }

    fn runtime(self) -> &'static str {
        match self {
            BenchFunction::Python => "python3.12",
            BenchFunction::Native => "provided.al2023",
            BenchFunction::Node => "nodejs20.x",
        }
    }

    fn handler(self) -> &'static str {
        match self {
            BenchFunction::Python => "app.handler",
            BenchFunction::Native => "hello",
            BenchFunction::Node => "index.handler",
        }
    }

    /// The function's zip, built in memory.
    fn package(self) -> anyhow::Result<Vec<u8>> {
        match self {
            BenchFunction::Python => zip_files(&[("app.py", PYTHON_APP.as_bytes(), 0o644)]),
            BenchFunction::Node => zip_files(&[("index.js", NODE_APP.as_bytes(), 0o644)]),
            BenchFunction::Native => {
                // The binary travels in the package: an isolating sandbox shows the function
                // nothing of the host, so it cannot exec the server's own copy.
                let exe = std::env::current_exe().context("find the serval binary")?;
                let binary =
                    std::fs::read(&exe).with_context(|| format!("read {}", exe.display()))?;
                native_package(&binary)
            }
        }
    }
}

/// The native function's zip: `binary` and a `bootstrap` that execs its hello runtime.
fn native_package(binary: &[u8]) -> anyhow::Result<Vec<u8>> {
    zip_files(&[
        ("bootstrap", NATIVE_BOOTSTRAP.as_bytes(), 0o755),
        ("serval", binary, 0o755),
    ])
}

/// The native function's `bootstrap`: exec the packaged binary's hello runtime.
const NATIVE_BOOTSTRAP: &str = "#!/bin/sh\nexec \"$LAMBDA_TASK_ROOT/serval\" __hello-runtime\n";

/// A zip of `(name, contents, mode)` entries.
fn zip_files(files: &[(&str, &[u8], u32)]) -> anyhow::Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data, mode) in files {
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        writer
            .start_file(*name, options)
            .with_context(|| format!("add {name} to the zip"))?;
        writer
            .write_all(data)
            .with_context(|| format!("add {name} to the zip"))?;
    }
    Ok(writer.finish().context("finish the zip")?.into_inner())
}

/// Two percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct P50P99 {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Cold-start results of one function.
#[derive(Debug, Clone, Serialize)]
pub struct ColdStartReport {
    pub samples: u32,
    /// From sending CreateFunction to the first Invoke response (upload, unpack, cold start, invoke).
    pub create_to_first_response: P50P99,
    /// The first (successful) Invoke request alone.
    pub first_invoke: P50P99,
}

/// Warm sequential results of one function.
#[derive(Debug, Clone, Serialize)]
pub struct SequentialReport {
    pub invokes: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub invokes_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// One throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    pub concurrency: u32,
    pub seconds: f64,
    pub invokes: u64,
    pub errors: u64,
    pub invokes_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Everything measured for one function.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionReport {
    pub function: BenchFunction,
    /// The sandbox backend of the server (`-` for a server given with `--endpoint`).
    pub sandbox: String,
    pub runtime: &'static str,
    pub cold_start: ColdStartReport,
    pub sequential: SequentialReport,
    pub throughput: Vec<ThroughputReport>,
}

/// The whole benchmark's results (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub endpoint: String,
    pub private_server: bool,
    pub memory_mb: u32,
    pub functions: Vec<FunctionReport>,
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3)
}

/// Runs `serval bench` against `endpoint`, or a private server when `None`.
pub async fn run(endpoint: Option<Endpoint>, args: BenchArgs) -> anyhow::Result<()> {
    if args.sandbox_cost {
        return sandbox_cost::run(&args).await;
    }
    if args.cold {
        if endpoint.is_some() && !args.sandbox.is_empty() {
            anyhow::bail!(
                "--sandbox starts a private server; it cannot be combined with --endpoint"
            );
        }
        return cold_start::run(endpoint, &args).await;
    }
    if args.http {
        if endpoint.is_some() && !args.sandbox.is_empty() {
            anyhow::bail!(
                "--sandbox starts a private server; it cannot be combined with --endpoint"
            );
        }
        return http_trigger::run(endpoint, &args).await;
    }
    if args.async_queue {
        if endpoint.is_some() && !args.sandbox.is_empty() {
            anyhow::bail!(
                "--sandbox starts a private server; it cannot be combined with --endpoint"
            );
        }
        return async_queue::run(endpoint, &args).await;
    }
    if endpoint.is_some() && !args.sandbox.is_empty() {
        anyhow::bail!("--sandbox starts private servers; it cannot be combined with --endpoint");
    }
    let backends: Vec<Option<&str>> = if args.sandbox.is_empty() {
        vec![None]
    } else {
        args.sandbox.iter().map(|s| Some(s.as_str())).collect()
    };
    let mut functions = Vec::new();
    let mut url = String::new();
    for backend in backends {
        let (mut reports, endpoint) = run_one(endpoint.clone(), backend, &args).await?;
        functions.append(&mut reports);
        url = endpoint;
    }
    let report = BenchReport {
        endpoint: url,
        private_server: endpoint.is_none(),
        memory_mb: args.memory,
        functions,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        print!("{}", render(&report, &args));
    }
    Ok(())
}

/// Measures every function against one server (a private one with `backend`, or `endpoint`).
async fn run_one(
    endpoint: Option<Endpoint>,
    backend: Option<&str>,
    args: &BenchArgs,
) -> anyhow::Result<(Vec<FunctionReport>, String)> {
    let spinner = Spinner::start(if endpoint.is_some() {
        "connecting"
    } else {
        "starting a private server"
    });
    let (server, endpoint, sandbox) = bench_target(endpoint, backend, &[]).await?;
    let client = Client::new(endpoint.clone());
    let created: Arc<Mutex<Vec<String>>> = Arc::default();

    let result = tokio::select! {
        result = measure(&client, args, &spinner, created.clone()) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };

    spinner.set("cleaning up");
    let stopped = clean_up(&client, &created, server).await;
    drop(spinner);

    let mut functions = result?;
    stopped?;
    for f in &mut functions {
        f.sandbox = sandbox.clone();
    }
    Ok((functions, endpoint.url()))
}

/// The server a benchmark runs against: `endpoint`, or a private server started with the
/// `backend` sandbox and `extra` flags. Returns the private server (to stop), the endpoint and
/// the backend it reported (`-` for an outside server).
async fn bench_target(
    endpoint: Option<Endpoint>,
    backend: Option<&str>,
    extra: &[&str],
) -> anyhow::Result<(Option<PrivateServer>, Endpoint, String)> {
    let (server, endpoint) = match endpoint {
        Some(endpoint) => (None, endpoint),
        None => {
            let server = PrivateServer::start(backend, extra)
                .await
                .context("start a private server")?;
            let endpoint = server.endpoint().clone();
            (Some(server), endpoint)
        }
    };
    let sandbox = server
        .as_ref()
        .map_or("-".to_owned(), |s| s.sandbox().to_owned());
    Ok((server, endpoint, sandbox))
}

/// Deletes the functions a benchmark created (also after a failure or Ctrl-C) and stops its
/// private server.
async fn clean_up(
    client: &Client,
    created: &Mutex<Vec<String>>,
    server: Option<PrivateServer>,
) -> anyhow::Result<()> {
    let leftovers: Vec<String> = std::mem::take(&mut *created.lock().expect("not poisoned"));
    for name in leftovers {
        if let Err(e) = client.delete_function(&name).await {
            if !e.is_connection() && e.code() != Some("ResourceNotFoundException") {
                tracing::warn!(function = %name, "failed to delete benchmark function: {e}");
            }
        }
    }
    match server {
        Some(server) => server.stop().await,
        None => Ok(()),
    }
}

/// The measurements, function by function.
async fn measure(
    client: &Client,
    args: &BenchArgs,
    spinner: &Spinner,
    created: Arc<Mutex<Vec<String>>>,
) -> anyhow::Result<Vec<FunctionReport>> {
    let prefix = format!("serval-bench-{}", std::process::id());
    let mut reports = Vec::new();
    for &function in &args.functions {
        let label = function.label();
        let zip = function.package()?;
        let create = |name: String| CreateFunctionInput {
            function_name: name,
            runtime: function.runtime().to_owned(),
            role: DEFAULT_ROLE.to_owned(),
            handler: function.handler().to_owned(),
            code: FunctionCode::from_zip(&zip),
            memory_size: Some(args.memory),
            timeout: Some(30),
            environment: None,
        };

        // Cold starts: a new function per sample.
        let mut total_ns = Vec::new();
        let mut first_ns = Vec::new();
        for i in 0..args.samples {
            spinner.set(format!("{label}: cold start {}/{}", i + 1, args.samples));
            let name = format!("{prefix}-{label}-cold-{i}");
            let (total, first) = cold_sample(client, &create(name.clone()), &created).await?;
            total_ns.push(total.as_nanos() as u64);
            first_ns.push(first.as_nanos() as u64);
            forget(&created, &name);
            if let Err(e) = client.delete_function(&name).await {
                tracing::warn!(function = %name, "failed to delete benchmark function: {e}");
            }
        }
        total_ns.sort_unstable();
        first_ns.sort_unstable();
        let cold_start = ColdStartReport {
            samples: args.samples,
            create_to_first_response: P50P99 {
                p50_ms: ms(percentile(&total_ns, 0.5)),
                p99_ms: ms(percentile(&total_ns, 0.99)),
            },
            first_invoke: P50P99 {
                p50_ms: ms(percentile(&first_ns, 0.5)),
                p99_ms: ms(percentile(&first_ns, 0.99)),
            },
        };

        // The warm function.
        let name = format!("{prefix}-{label}");
        spinner.set(format!("{label}: deploying {name}"));
        remember(&created, &name);
        client
            .create_function(&create(name.clone()))
            .await
            .with_context(|| format!("create function {name}"))?;
        wait_ready(client, &name).await?;
        let template = Arc::new(InvokeTemplate::new(
            client.endpoint(),
            &name,
            Bytes::from_static(b"{}"),
        ));

        spinner.set(format!("{label}: {} sequential invokes", args.invokes));
        // One warm-up invoke creates the environment.
        load::sequential(template.clone(), 1, SEQUENTIAL_TIME_CAP).await?;
        let (samples, elapsed) =
            load::sequential(template.clone(), args.invokes, SEQUENTIAL_TIME_CAP).await?;
        let sequential = sequential_report(samples, elapsed);

        let mut throughput = Vec::new();
        for &concurrency in &args.concurrency {
            spinner.set(format!(
                "{label}: {concurrency} concurrent clients for {:?}",
                args.duration
            ));
            let template = Arc::new(InvokeTemplate::new(
                client.endpoint(),
                &name,
                Bytes::from_static(b"{}"),
            ));
            let (samples, elapsed) =
                load::closed_loop(template, concurrency, WARMUP_INVOKES, args.duration).await?;
            throughput.push(throughput_report(concurrency, samples, elapsed));
        }

        forget(&created, &name);
        if let Err(e) = client.delete_function(&name).await {
            tracing::warn!(function = %name, "failed to delete benchmark function: {e}");
        }
        reports.push(FunctionReport {
            function,
            sandbox: String::new(),
            runtime: function.runtime(),
            cold_start,
            sequential,
            throughput,
        });
    }
    Ok(reports)
}

fn remember(created: &Mutex<Vec<String>>, name: &str) {
    created.lock().expect("not poisoned").push(name.to_owned());
}

fn forget(created: &Mutex<Vec<String>>, name: &str) {
    created.lock().expect("not poisoned").retain(|n| n != name);
}

/// One cold start: CreateFunction, then Invoke until it answers (retrying while the function is
/// not ready). Returns (CreateFunction request → first Invoke response, that Invoke alone).
async fn cold_sample(
    client: &Client,
    input: &CreateFunctionInput,
    created: &Mutex<Vec<String>>,
) -> anyhow::Result<(Duration, Duration)> {
    let name = &input.function_name;
    remember(created, name);
    let created_at = Instant::now();
    client
        .create_function(input)
        .await
        .with_context(|| format!("create function {name}"))?;
    loop {
        let sent = Instant::now();
        match client.invoke(name, Bytes::from_static(b"{}"), false).await {
            Ok(out) => {
                let done = Instant::now();
                if let Some(kind) = out.function_error {
                    anyhow::bail!(
                        "the benchmark function {name} failed: {}",
                        crate::cmd::invoke::render_function_error(&kind, &out.payload)
                            .trim_start_matches("error: ")
                            .trim_end()
                    );
                }
                return Ok((done - created_at, done - sent));
            }
            Err(e) if is_not_ready(&e) && created_at.elapsed() < READY_WAIT => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("invoke function {name}")),
        }
    }
}

fn sequential_report(mut samples: Samples, elapsed: Duration) -> SequentialReport {
    samples.latencies_ns.sort_unstable();
    let n = samples.latencies_ns.len() as u64;
    SequentialReport {
        invokes: n,
        errors: samples.errors,
        p50_ms: ms(percentile(&samples.latencies_ns, 0.5)),
        p99_ms: ms(percentile(&samples.latencies_ns, 0.99)),
        p999_ms: ms(percentile(&samples.latencies_ns, 0.999)),
        invokes_per_s: rate(n, elapsed),
        first_error: samples.first_error,
    }
}

fn throughput_report(
    concurrency: u32,
    mut samples: Samples,
    elapsed: Duration,
) -> ThroughputReport {
    samples.latencies_ns.sort_unstable();
    let n = samples.latencies_ns.len() as u64;
    ThroughputReport {
        concurrency,
        seconds: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        invokes: n,
        errors: samples.errors,
        invokes_per_s: rate(n, elapsed),
        p50_ms: ms(percentile(&samples.latencies_ns, 0.5)),
        p99_ms: ms(percentile(&samples.latencies_ns, 0.99)),
        first_error: samples.first_error,
    }
}

pub(crate) fn rate(n: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        return 0.0;
    }
    (n as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0
}

impl FunctionReport {
    /// `python`, or `python [linux]` when the backend is known.
    fn label(&self) -> String {
        match self.sandbox.as_str() {
            "" | "-" => self.function.label().to_owned(),
            backend => format!("{} [{backend}]", self.function.label()),
        }
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(
        || "-".to_owned(),
        |ms| human_duration(Duration::from_secs_f64(ms / 1e3)),
    )
}

/// The human-readable report.
pub fn render(report: &BenchReport, args: &BenchArgs) -> String {
    let mut out = format!(
        "serval bench against {}{}: {} MB functions, {} cold samples, {} sequential invokes, {:?} per concurrency level\n\n",
        report.endpoint,
        if report.private_server { " (private server)" } else { "" },
        report.memory_mb,
        args.samples,
        args.invokes,
        args.duration,
    );

    out.push_str("Cold start (a new function per sample)\n");
    let mut cold = Table::new(&[
        ("FUNCTION", Align::Left),
        ("RUNTIME", Align::Left),
        ("SAMPLES", Align::Right),
        ("CREATE→RESPONSE P50", Align::Right),
        ("P99", Align::Right),
        ("FIRST INVOKE P50", Align::Right),
        ("P99", Align::Right),
    ]);
    for f in &report.functions {
        let c = &f.cold_start;
        cold.row(vec![
            f.label(),
            f.runtime.to_owned(),
            c.samples.to_string(),
            fmt_ms(c.create_to_first_response.p50_ms),
            fmt_ms(c.create_to_first_response.p99_ms),
            fmt_ms(c.first_invoke.p50_ms),
            fmt_ms(c.first_invoke.p99_ms),
        ]);
    }
    out.push_str(&cold.render());

    out.push_str("\nWarm sequential invokes (one keep-alive connection)\n");
    let mut seq = Table::new(&[
        ("FUNCTION", Align::Left),
        ("INVOKES", Align::Right),
        ("ERRORS", Align::Right),
        ("P50", Align::Right),
        ("P99", Align::Right),
        ("P99.9", Align::Right),
        ("INVOKES/S", Align::Right),
    ]);
    for f in &report.functions {
        let s = &f.sequential;
        seq.row(vec![
            f.label(),
            s.invokes.to_string(),
            s.errors.to_string(),
            fmt_ms(s.p50_ms),
            fmt_ms(s.p99_ms),
            fmt_ms(s.p999_ms),
            format!("{:.0}", s.invokes_per_s),
        ]);
    }
    out.push_str(&seq.render());

    out.push_str("\nWarm throughput (each client its own keep-alive connection)\n");
    let mut thr = Table::new(&[
        ("FUNCTION", Align::Left),
        ("CLIENTS", Align::Right),
        ("INVOKES", Align::Right),
        ("ERRORS", Align::Right),
        ("INVOKES/S", Align::Right),
        ("P50", Align::Right),
        ("P99", Align::Right),
    ]);
    for f in &report.functions {
        for t in &f.throughput {
            thr.row(vec![
                f.label(),
                t.concurrency.to_string(),
                t.invokes.to_string(),
                t.errors.to_string(),
                format!("{:.0}", t.invokes_per_s),
                fmt_ms(t.p50_ms),
                fmt_ms(t.p99_ms),
            ]);
        }
    }
    out.push_str(&thr.render());

    let errors: Vec<String> = report
        .functions
        .iter()
        .flat_map(|f| {
            let seq = f
                .sequential
                .first_error
                .as_ref()
                .map(|e| format!("{} sequential: {e}", f.label()));
            let thr = f.throughput.iter().filter_map(move |t| {
                t.first_error
                    .as_ref()
                    .map(|e| format!("{} x{}: {e}", f.label(), t.concurrency))
            });
            seq.into_iter().chain(thr)
        })
        .collect();
    if !errors.is_empty() {
        out.push_str("\nFirst error of each run that had errors:\n");
        for e in errors {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn native_package_carries_the_binary_and_a_bootstrap_that_execs_it() {
        let zip = native_package(b"\x7fELF pretend").unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        {
            let mut boot = archive.by_name("bootstrap").unwrap();
            assert_eq!(boot.unix_mode().unwrap() & 0o777, 0o755);
            let mut text = String::new();
            boot.read_to_string(&mut text).unwrap();
            assert_eq!(
                text,
                "#!/bin/sh\nexec \"$LAMBDA_TASK_ROOT/serval\" __hello-runtime\n"
            );
        }
        let binary = archive.by_name("serval").unwrap();
        assert_eq!(binary.unix_mode().unwrap() & 0o777, 0o755);
        assert_eq!(binary.size(), b"\x7fELF pretend".len() as u64);
    }

    #[test]
    fn python_package_has_the_handler() {
        let zip = BenchFunction::Python.package().unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        let mut app = String::new();
        archive
            .by_name("app.py")
            .unwrap()
            .read_to_string(&mut app)
            .unwrap();
        assert!(app.contains("def handler(event, context):"));
    }

    #[test]
    fn bench_durations_are_bounded() {
        assert_eq!(parse_bench_duration("5s").unwrap(), Duration::from_secs(5));
        assert!(parse_bench_duration("1ms").is_err());
        assert!(parse_bench_duration("1h").is_err());
    }
}
