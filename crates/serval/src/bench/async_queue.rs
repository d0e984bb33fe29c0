//! `serval bench --async`: how fast the durable queue accepts asynchronous (`Event`) invocations
//! and how soon an accepted event starts in an idle warm function.
//!
//! Three phases against one server, with the native hello function:
//! 1. *held*: a function with reserved concurrency 0 receives events from N clients in a closed
//!    loop; the dispatcher leaves them queued, so this measures the acceptance path alone
//!    (HTTP, validation, a durable group commit, the 202).
//! 2. *running*: the same against a function that runs its events as they arrive, so the
//!    dispatcher and the environments share the machine with acceptance. Afterwards a probe
//!    event shows when the backlog has drained (events are run in order per function).
//! 3. *start latency*: one event at a time to an idle warm function whose runtime sends the
//!    event back over UDP the moment it receives it; the time from sending the Invoke request
//!    to that datagram is the accept-to-handler-start latency.
//!
//! Not for: asserting on speed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use serde::Serialize;

use super::load::{self, InvokeConn, InvokeTemplate, Outcome};
use super::{
    bench_target, clean_up, forget, ms, percentile, remember, BenchArgs, BenchFunction, P50P99,
};
use crate::client::{Client, CreateFunctionInput, Endpoint, FunctionCode, DEFAULT_ROLE};
use crate::cmd::deploy::wait_ready;
use crate::cmd::Spinner;
use crate::table::{Align, Table};

/// The queue bound given to the private server: the held phase keeps every event it sends.
const PRIVATE_QUEUE_MAX_EVENTS: &str = "10000000";
/// How long the running phase's backlog may take to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one start-latency sample waits for its datagram.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between start-latency samples: the function is idle (warm, not busy) each time.
const PROBE_GAP: Duration = Duration::from_millis(20);
/// Most start-latency samples.
const PROBE_SAMPLES_MAX: u64 = 2000;

/// One closed-loop enqueue run.
#[derive(Debug, Serialize)]
pub struct EnqueueRun {
    /// `held` (the function's events wait) or `running` (they run as they arrive).
    pub mode: &'static str,
    pub clients: u32,
    /// Events answered 202.
    pub accepted: u64,
    /// Any other answer or a transport failure.
    pub errors: u64,
    pub accepted_per_s: f64,
    /// Request sent → 202 received.
    pub ack: P50P99,
    pub ack_max_ms: Option<f64>,
    pub first_error: Option<String>,
}

/// Accept-to-handler-start latency of single events to an idle warm function.
#[derive(Debug, Serialize)]
pub struct StartReport {
    pub samples: u64,
    /// Events whose datagram never came (or came after the timeout).
    pub lost: u64,
    /// Invoke request sent → the runtime received the event.
    pub start: P50P99,
    pub start_max_ms: Option<f64>,
    /// Invoke request sent → 202 received.
    pub ack: P50P99,
}

/// Everything `serval bench --async` measured.
#[derive(Debug, Serialize)]
pub struct AsyncReport {
    pub endpoint: String,
    pub sandbox: String,
    pub runs: Vec<EnqueueRun>,
    /// Events accepted in the running phase and how long after it ended the last one ran.
    pub running_backlog: u64,
    pub drain_s: Option<f64>,
    pub start: StartReport,
}

/// Runs the asynchronous benchmark against `endpoint`, or a private server when `None`.
pub async fn run(endpoint: Option<Endpoint>, args: &BenchArgs) -> anyhow::Result<()> {
    let spinner = Spinner::start("starting a private server");
    let backend = args.sandbox.first().map(String::as_str);
    let (server, endpoint, sandbox) = bench_target(
        endpoint,
        backend,
        &["--async-queue-max-events", PRIVATE_QUEUE_MAX_EVENTS],
    )
    .await?;
    let client = Client::new(endpoint.clone());
    let created: Arc<Mutex<Vec<String>>> = Arc::default();
    let result = tokio::select! {
        result = measure(&client, args, &spinner, created.clone()) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    spinner.set("cleaning up");
    let stopped = clean_up(&client, &created, server).await;
    drop(spinner);
    let (runs, running_backlog, drain, start) = result?;
    stopped?;
    let report = AsyncReport {
        endpoint: endpoint.url(),
        sandbox,
        runs,
        running_backlog,
        drain_s: drain.map(|d| (d.as_secs_f64() * 1e3).round() / 1e3),
        start,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        print!("{}", render(&report, args));
    }
    Ok(())
}

type Measured = (Vec<EnqueueRun>, u64, Option<Duration>, StartReport);

async fn measure(
    client: &Client,
    args: &BenchArgs,
    spinner: &Spinner,
    created: Arc<Mutex<Vec<String>>>,
) -> anyhow::Result<Measured> {
    let prefix = format!("serval-bench-{}-async", std::process::id());
    let zip = BenchFunction::Native.package()?;
    let deploy = |name: String| {
        let input = CreateFunctionInput {
            function_name: name.clone(),
            runtime: BenchFunction::Native.runtime().to_owned(),
            role: DEFAULT_ROLE.to_owned(),
            handler: BenchFunction::Native.handler().to_owned(),
            code: FunctionCode::from_zip(&zip),
            memory_size: Some(args.memory),
            timeout: Some(30),
            environment: None,
        };
        let created = created.clone();
        async move {
            remember(&created, &name);
            client
                .create_function(&input)
                .await
                .with_context(|| format!("create function {name}"))?;
            wait_ready(client, &name).await?;
            // One synchronous invoke makes the environment.
            client
                .invoke(&name, Bytes::from_static(b"{}"), false)
                .await
                .with_context(|| format!("warm function {name}"))?;
            anyhow::Ok(name)
        }
    };
    let socket = tokio::net::UdpSocket::bind(("127.0.0.1", 0))
        .await
        .context("bind the probe socket")?;
    let probe_addr = socket.local_addr().context("read the probe address")?;

    let mut runs = Vec::new();
    spinner.set("held: deploying");
    let held = deploy(format!("{prefix}-held")).await?;
    client
        .put_function_concurrency(&held, 0)
        .await
        .context("hold the function's events (reserved concurrency 0)")?;
    for &clients in &args.concurrency {
        spinner.set(format!("held: {clients} clients for {:?}", args.duration));
        runs.push(enqueue_run(client.endpoint(), &held, "held", clients, args.duration).await?);
    }
    forget(&created, &held);
    client.delete_function(&held).await.ok();

    spinner.set("running: deploying");
    let running = deploy(format!("{prefix}-running")).await?;
    let mut backlog = 0;
    for &clients in &args.concurrency {
        spinner.set(format!(
            "running: {clients} clients for {:?}",
            args.duration
        ));
        let run = enqueue_run(
            client.endpoint(),
            &running,
            "running",
            clients,
            args.duration,
        )
        .await?;
        backlog += run.accepted;
        runs.push(run);
    }
    spinner.set(format!("running: waiting for {backlog} events to run"));
    let drain_started = Instant::now();
    let mut conn =
        InvokeConn::connect(probe_template(client.endpoint(), &running, probe_addr, 0)).await?;
    anyhow::ensure!(
        conn.invoke().await? == Outcome::Ok,
        "the drain probe was not accepted"
    );
    let drain = wait_probe(&socket, 0, DRAIN_TIMEOUT)
        .await?
        .then(|| drain_started.elapsed());

    let samples = args.invokes.min(PROBE_SAMPLES_MAX);
    spinner.set(format!("start latency: deploying ({samples} samples)"));
    let idle = deploy(format!("{prefix}-idle")).await?;
    let mut conn =
        InvokeConn::connect(probe_template(client.endpoint(), &idle, probe_addr, 1)).await?;
    let (mut start_ns, mut ack_ns, mut lost) = (Vec::new(), Vec::new(), 0);
    for seq in 1..=samples {
        if seq % 50 == 0 {
            spinner.set(format!("start latency: {seq}/{samples}"));
        }
        conn.set_template(probe_template(client.endpoint(), &idle, probe_addr, seq));
        tokio::time::sleep(PROBE_GAP).await;
        let sent = Instant::now();
        let outcome = conn.invoke().await?;
        let acked = sent.elapsed();
        anyhow::ensure!(
            outcome == Outcome::Ok,
            "a probe event was refused: {outcome:?}"
        );
        ack_ns.push(acked.as_nanos() as u64);
        if wait_probe(&socket, seq, PROBE_TIMEOUT).await? {
            start_ns.push(sent.elapsed().as_nanos() as u64);
        } else {
            lost += 1;
        }
    }
    start_ns.sort_unstable();
    ack_ns.sort_unstable();
    let start = StartReport {
        samples,
        lost,
        start: P50P99 {
            p50_ms: ms(percentile(&start_ns, 0.5)),
            p99_ms: ms(percentile(&start_ns, 0.99)),
        },
        start_max_ms: ms(start_ns.last().map(|&n| Duration::from_nanos(n))),
        ack: P50P99 {
            p50_ms: ms(percentile(&ack_ns, 0.5)),
            p99_ms: ms(percentile(&ack_ns, 0.99)),
        },
    };
    Ok((runs, backlog, drain, start))
}

/// `clients` workers sending events to `function` for `duration`.
async fn enqueue_run(
    endpoint: &Endpoint,
    function: &str,
    mode: &'static str,
    clients: u32,
    duration: Duration,
) -> anyhow::Result<EnqueueRun> {
    let template = Arc::new(InvokeTemplate::with_type(
        endpoint,
        function,
        Bytes::from_static(br#"{"bench":"async"}"#),
        "Event",
    ));
    let (mut samples, elapsed) = load::closed_loop(template, clients, 0, duration).await?;
    samples.latencies_ns.sort_unstable();
    let accepted = samples.latencies_ns.len() as u64;
    Ok(EnqueueRun {
        mode,
        clients,
        accepted,
        errors: samples.errors,
        accepted_per_s: super::rate(accepted, elapsed),
        ack: P50P99 {
            p50_ms: ms(percentile(&samples.latencies_ns, 0.5)),
            p99_ms: ms(percentile(&samples.latencies_ns, 0.99)),
        },
        ack_max_ms: ms(samples
            .latencies_ns
            .last()
            .map(|&n| Duration::from_nanos(n))),
        first_error: samples.first_error,
    })
}

/// An `Event` invoke of `function` whose runtime reports event `seq` to `probe` over UDP.
fn probe_template(
    endpoint: &Endpoint,
    function: &str,
    probe: std::net::SocketAddr,
    seq: u64,
) -> Arc<InvokeTemplate> {
    let body = format!(r#"{{"probe":"{probe}","seq":{seq}}}"#);
    Arc::new(InvokeTemplate::with_type(
        endpoint,
        function,
        Bytes::from(body),
        "Event",
    ))
}

/// Waits for the datagram of probe `seq` (older ones are skipped); false on timeout.
async fn wait_probe(
    socket: &tokio::net::UdpSocket,
    seq: u64,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let needle = format!(r#""seq":{seq}}}"#);
    let mut buf = [0u8; 1024];
    loop {
        let received = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await;
        let Ok(received) = received else {
            return Ok(false);
        };
        let n = received.context("receive a probe datagram")?;
        if buf[..n].ends_with(needle.as_bytes()) {
            return Ok(true);
        }
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    super::fmt_ms(v)
}

/// The report as tables.
pub fn render(report: &AsyncReport, args: &BenchArgs) -> String {
    let mut out = format!(
        "serval bench --async against {} (sandbox {}): native function, {} MB, {:?} per run\n\n",
        report.endpoint, report.sandbox, args.memory, args.duration
    );
    out.push_str("Durable enqueue (Event invokes answered 202 after the group commit's fsync)\n");
    let mut table = Table::new(&[
        ("MODE", Align::Left),
        ("CLIENTS", Align::Right),
        ("ACCEPTED", Align::Right),
        ("ERRORS", Align::Right),
        ("ACCEPTED/S", Align::Right),
        ("ACK P50", Align::Right),
        ("P99", Align::Right),
        ("MAX", Align::Right),
    ]);
    for r in &report.runs {
        table.row(vec![
            r.mode.to_owned(),
            r.clients.to_string(),
            r.accepted.to_string(),
            r.errors.to_string(),
            format!("{:.0}", r.accepted_per_s),
            fmt_ms(r.ack.p50_ms),
            fmt_ms(r.ack.p99_ms),
            fmt_ms(r.ack_max_ms),
        ]);
    }
    out.push_str(&table.render());
    out.push_str("held: the function's events wait (reserved concurrency 0); running: they run as they arrive\n");
    if let Some(e) = report.runs.iter().find_map(|r| r.first_error.as_deref()) {
        out.push_str(&format!("first error: {e}\n"));
    }
    match report.drain_s {
        Some(s) => out.push_str(&format!(
            "running backlog of {} events had run {s:.2} s after the last run ended\n",
            report.running_backlog
        )),
        None => out.push_str("running backlog did not drain in time\n"),
    }
    let s = &report.start;
    out.push_str(&format!(
        "\nAsync start, idle warm function (Invoke sent → handler has the event), {} samples, {} lost\n",
        s.samples, s.lost
    ));
    let mut table = Table::new(&[
        ("START P50", Align::Right),
        ("P99", Align::Right),
        ("MAX", Align::Right),
        ("ACK P50", Align::Right),
        ("P99", Align::Right),
    ]);
    table.row(vec![
        fmt_ms(s.start.p50_ms),
        fmt_ms(s.start.p99_ms),
        fmt_ms(s.start_max_ms),
        fmt_ms(s.ack.p50_ms),
        fmt_ms(s.ack.p99_ms),
    ]);
    out.push_str(&table.render());
    out
}
