//! `serval bench --http`: what an HTTP trigger adds over a direct Invoke of the same warm
//! function.
//!
//! For each function (`--functions`): deploy it, give it a Function URL, warm both paths,
//! then measure
//! 1. *sequential* latency: `--invokes` requests each way on one keep-alive connection, in
//!    four interleaved rounds (direct, URL, direct, URL, ...) so drift on a shared machine
//!    hits both alike; the added latency is the difference of the p50s;
//! 2. *throughput*: a closed loop at each `--concurrency` level, direct then URL.
//!
//! The direct Invoke sends `{}` and gets the function's answer; the URL request is a `GET /`
//! whose payload format 2.0 event the gateway builds, and whose answer it maps back to HTTP:
//! the difference is exactly the trigger's work.
//!
//! Not for: asserting on speed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::Method;
use serde::Serialize;

use super::load::{self, InvokeTemplate, Samples};
use super::{
    bench_target, clean_up, forget, percentile, remember, sequential_report, throughput_report,
    BenchArgs, BenchFunction, SequentialReport, ThroughputReport,
};
use crate::client::{Client, CreateFunctionInput, Endpoint, FunctionCode, DEFAULT_ROLE};
use crate::cmd::deploy::wait_ready;
use crate::cmd::Spinner;
use crate::table::{Align, Table};

/// Interleaved rounds of the sequential phase.
const ROUNDS: u64 = 4;
/// Warm-up requests each way before measuring.
const WARMUP: u64 = 200;
/// Each sequential round stops after this long even if not all requests were made.
const ROUND_TIME_CAP: Duration = Duration::from_secs(60);

/// One closed-loop run of one path.
#[derive(Debug, Serialize)]
pub struct PathThroughput {
    /// `invoke` or `url`.
    pub path: &'static str,
    #[serde(flatten)]
    pub run: ThroughputReport,
}

/// Everything measured for one function.
#[derive(Debug, Serialize)]
pub struct HttpFunctionReport {
    pub function: BenchFunction,
    pub direct_invoke: SequentialReport,
    pub function_url: SequentialReport,
    /// Function URL p50 − direct Invoke p50, microseconds.
    pub added_p50_us: Option<f64>,
    /// The same difference within each interleaved round (its spread shows the noise).
    pub added_p50_us_by_round: Vec<Option<f64>>,
    pub throughput: Vec<PathThroughput>,
}

/// `serval bench --http`'s report.
#[derive(Debug, Serialize)]
pub struct HttpReport {
    pub endpoint: String,
    pub sandbox: String,
    pub functions: Vec<HttpFunctionReport>,
}

/// Runs the HTTP-trigger benchmark against `endpoint`, or a private server when `None`.
pub async fn run(endpoint: Option<Endpoint>, args: &BenchArgs) -> anyhow::Result<()> {
    let spinner = Spinner::start("starting a private server");
    let backend = args.sandbox.first().map(String::as_str);
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
    let functions = result?;
    stopped?;
    let report = HttpReport {
        endpoint: endpoint.url(),
        sandbox,
        functions,
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

async fn measure(
    client: &Client,
    args: &BenchArgs,
    spinner: &Spinner,
    created: Arc<Mutex<Vec<String>>>,
) -> anyhow::Result<Vec<HttpFunctionReport>> {
    let prefix = format!("serval-bench-{}-http", std::process::id());
    let mut reports = Vec::new();
    for &function in &args.functions {
        let label = function.label();
        let name = format!("{prefix}-{label}");
        spinner.set(format!("{label}: deploying"));
        let input = CreateFunctionInput {
            function_name: name.clone(),
            runtime: function.runtime().to_owned(),
            role: DEFAULT_ROLE.to_owned(),
            handler: function.handler().to_owned(),
            code: FunctionCode::from_zip(&function.package()?),
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
        let url = client
            .create_function_url(&name)
            .await
            .with_context(|| format!("create a Function URL for {name}"))?;
        let host = url_host(&url)?;

        let direct = Arc::new(InvokeTemplate::new(
            client.endpoint(),
            &name,
            Bytes::from_static(b"{}"),
        ));
        let via_url = Arc::new(InvokeTemplate::http(
            client.endpoint(),
            Method::GET,
            "/",
            &host,
            Bytes::new(),
        ));

        spinner.set(format!("{label}: warming up"));
        for template in [&direct, &via_url] {
            let (warm, _) = load::sequential(template.clone(), WARMUP, ROUND_TIME_CAP).await?;
            if let Some(e) = warm.first_error {
                anyhow::bail!("{label}: warming up failed: {e}");
            }
        }

        let per_round = (args.invokes / ROUNDS).max(1);
        let (mut all_direct, mut all_url) = (Samples::default(), Samples::default());
        let (mut direct_time, mut url_time) = (Duration::ZERO, Duration::ZERO);
        let mut by_round = Vec::new();
        for round in 1..=ROUNDS {
            spinner.set(format!(
                "{label}: sequential round {round}/{ROUNDS} ({per_round} each way)"
            ));
            let (mut d, dt) = load::sequential(direct.clone(), per_round, ROUND_TIME_CAP).await?;
            let (mut u, ut) = load::sequential(via_url.clone(), per_round, ROUND_TIME_CAP).await?;
            d.latencies_ns.sort_unstable();
            u.latencies_ns.sort_unstable();
            by_round.push(added_us(&d.latencies_ns, &u.latencies_ns));
            all_direct.merge(d);
            all_url.merge(u);
            direct_time += dt;
            url_time += ut;
        }
        all_direct.latencies_ns.sort_unstable();
        all_url.latencies_ns.sort_unstable();
        let added_p50_us = added_us(&all_direct.latencies_ns, &all_url.latencies_ns);

        let mut throughput = Vec::new();
        for &concurrency in &args.concurrency {
            for (path, template) in [("invoke", &direct), ("url", &via_url)] {
                spinner.set(format!(
                    "{label}: {path}, {concurrency} clients for {:?}",
                    args.duration
                ));
                let (samples, elapsed) =
                    load::closed_loop(template.clone(), concurrency, 3, args.duration).await?;
                throughput.push(PathThroughput {
                    path,
                    run: throughput_report(concurrency, samples, elapsed),
                });
            }
        }

        forget(&created, &name);
        client.delete_function(&name).await.ok();
        reports.push(HttpFunctionReport {
            function,
            direct_invoke: sequential_report(all_direct, direct_time),
            function_url: sequential_report(all_url, url_time),
            added_p50_us,
            added_p50_us_by_round: by_round,
            throughput,
        });
    }
    Ok(reports)
}

/// `host:port` of a Function URL (`http://<id>.lambda-url.<region>.localhost:<port>/`).
fn url_host(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("unexpected Function URL {url}"))?;
    Ok(rest.trim_end_matches('/').to_owned())
}

/// URL p50 − direct p50 in microseconds (both sorted).
fn added_us(direct: &[u64], url: &[u64]) -> Option<f64> {
    let d = percentile(direct, 0.5)?;
    let u = percentile(url, 0.5)?;
    let diff = u.as_nanos() as f64 - d.as_nanos() as f64;
    Some((diff / 100.0).round() / 10.0)
}

fn fmt_ms(v: Option<f64>) -> String {
    super::fmt_ms(v)
}

fn fmt_us(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |us| format!("{us:+.1} µs"))
}

fn render(report: &HttpReport, args: &BenchArgs) -> String {
    let mut out = format!(
        "HTTP trigger benchmark: {} (sandbox {}), {} requests each way in {ROUNDS} interleaved rounds\n\n",
        report.endpoint, report.sandbox, args.invokes
    );
    let mut latency = Table::new(&[
        ("function", Align::Left),
        ("path", Align::Left),
        ("requests", Align::Right),
        ("errors", Align::Right),
        ("p50", Align::Right),
        ("p99", Align::Right),
        ("p99.9", Align::Right),
        ("req/s", Align::Right),
    ]);
    for f in &report.functions {
        for (path, l) in [
            ("direct Invoke", &f.direct_invoke),
            ("Function URL", &f.function_url),
        ] {
            latency.row(vec![
                f.function.label().to_owned(),
                path.to_owned(),
                l.invokes.to_string(),
                l.errors.to_string(),
                fmt_ms(l.p50_ms),
                fmt_ms(l.p99_ms),
                fmt_ms(l.p999_ms),
                format!("{:.0}", l.invokes_per_s),
            ]);
        }
    }
    out.push_str(&latency.render());
    for f in &report.functions {
        let rounds: Vec<String> = f.added_p50_us_by_round.iter().map(|v| fmt_us(*v)).collect();
        out.push_str(&format!(
            "\n{}: the Function URL adds {} at p50 (by round: {})\n",
            f.function.label(),
            fmt_us(f.added_p50_us),
            rounds.join(", ")
        ));
    }
    let mut tput = Table::new(&[
        ("function", Align::Left),
        ("path", Align::Left),
        ("clients", Align::Right),
        ("requests", Align::Right),
        ("errors", Align::Right),
        ("req/s", Align::Right),
        ("p50", Align::Right),
        ("p99", Align::Right),
    ]);
    for f in &report.functions {
        for PathThroughput { path, run: t } in &f.throughput {
            tput.row(vec![
                f.function.label().to_owned(),
                (*path).to_owned(),
                t.concurrency.to_string(),
                t.invokes.to_string(),
                t.errors.to_string(),
                format!("{:.0}", t.invokes_per_s),
                fmt_ms(t.p50_ms),
                fmt_ms(t.p99_ms),
            ]);
        }
    }
    out.push('\n');
    out.push_str(&tput.render());
    for f in &report.functions {
        for PathThroughput { path, run: t } in &f.throughput {
            if let Some(e) = &t.first_error {
                out.push_str(&format!(
                    "{} {path} x{}: first error: {e}\n",
                    f.function.label(),
                    t.concurrency
                ));
            }
        }
    }
    out
}
