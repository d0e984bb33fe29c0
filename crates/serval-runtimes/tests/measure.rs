//! Rough figures for the bootstraps against the fake Runtime API; prints, never asserts on time.
//! Run with `cargo test -p serval-runtimes --release --test measure -- --ignored --nocapture`.

mod support;

use std::time::{Duration, Instant};

use serval_model::Runtime;
use support::{available, Env, Report};

fn median_ms(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(v[v.len() / 2]), ms(v[v.len() * 9 / 10]))
}

fn measure(runtime: Runtime, handler: &str, files: &[(&str, &str)]) {
    if !available(runtime, "measure") {
        return;
    }
    let mut cold = Vec::new();
    for _ in 0..15 {
        let env = Env::start(runtime, handler, files);
        let first = env
            .api
            .wait_first_next(Duration::from_secs(20))
            .expect("first GET /next");
        cold.push(first - env.started_at);
    }
    let env = Env::start(runtime, handler, files);
    for _ in 0..200 {
        assert!(matches!(
            env.invoke(r#"{"k":"v"}"#),
            Report::Response { .. }
        ));
    }
    let n = 3000;
    let mut warm = Vec::with_capacity(n);
    let all = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let r = env.invoke(r#"{"k":"v"}"#);
        warm.push(t.elapsed());
        assert!(matches!(r, Report::Response { .. }));
    }
    let total = all.elapsed();
    let (c50, c90) = median_ms(cold);
    let (w50, w90) = median_ms(warm);
    println!(
        "{runtime}: cold start (spawn -> first GET /next) p50 {c50:.1} ms p90 {c90:.1} ms; \
         warm invoke round trip p50 {:.0} us p90 {:.0} us, {:.0} invokes/s sequential on one env; \
         pipelined reads {}",
        w50 * 1e3,
        w90 * 1e3,
        n as f64 / total.as_secs_f64(),
        env.api.stats().pipelined_reads
    );
}

#[test]
#[ignore = "measurement; run explicitly with --ignored --nocapture"]
fn measure_python() {
    measure(
        Runtime::Python312,
        "app.handler",
        &[("app.py", "def handler(event, context):\n    return event\n")],
    );
}

#[test]
#[ignore = "measurement; run explicitly with --ignored --nocapture"]
fn measure_node() {
    measure(
        Runtime::Nodejs20,
        "index.handler",
        &[("index.js", "exports.handler = async (event) => event;")],
    );
}
