//! The benchmark's load generator: raw hyper HTTP/1.1 connections (one per worker, keep-alive,
//! `TCP_NODELAY`) sending a pre-built, pre-signed Invoke request, so the numbers measure Serval
//! rather than the client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, HOST};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Barrier;

use crate::client::{headers, Endpoint};
use crate::sigv4::{uri_encode, Signer};

/// How long one invocation may take before the load generator counts it as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A ready-made Invoke request: cloned per send, never re-encoded or re-signed.
#[derive(Debug, Clone)]
pub struct InvokeTemplate {
    authority: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl InvokeTemplate {
    /// A signed `RequestResponse` Invoke of `function` with `payload`.
    pub fn new(endpoint: &Endpoint, function: &str, payload: Bytes) -> Self {
        Self::with_type(endpoint, function, payload, "RequestResponse")
    }

    /// A signed Invoke of `function` with `payload` and `invocation_type` (`Event` for an
    /// asynchronous one, answered 202 once the event is stored).
    pub fn with_type(
        endpoint: &Endpoint,
        function: &str,
        payload: Bytes,
        invocation_type: &'static str,
    ) -> Self {
        let uri: Uri = format!("/2015-03-31/functions/{}/invocations", uri_encode(function))
            .parse()
            .expect("an encoded path is a valid URI");
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            HeaderValue::from_str(endpoint.authority()).expect("an authority is ASCII"),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            headers::INVOCATION_TYPE,
            HeaderValue::from_static(invocation_type),
        );
        Signer::from_env().sign(
            "lambda",
            &Method::POST,
            &uri,
            &mut headers,
            &payload,
            time::OffsetDateTime::now_utc(),
        );
        Self {
            authority: endpoint.authority().to_owned(),
            method: Method::POST,
            uri,
            headers,
            body: payload,
        }
    }

    /// A plain HTTP request to `endpoint`'s address, addressed to `host` (a Function URL's
    /// host name, say): no signature.
    pub fn http(endpoint: &Endpoint, method: Method, path: &str, host: &str, body: Bytes) -> Self {
        let uri: Uri = path.parse().expect("a valid path");
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            HeaderValue::from_str(host).expect("a host name is ASCII"),
        );
        Self {
            authority: endpoint.authority().to_owned(),
            method,
            uri,
            headers,
            body,
        }
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// How one invocation ended, from the load generator's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// 200 with `X-Amz-Function-Error`.
    FunctionError,
    /// Any other status (429 throttling, 5xx...).
    Status(u16),
}

/// One worker's keep-alive connection.
pub struct InvokeConn {
    sender: http1::SendRequest<Full<Bytes>>,
    template: Arc<InvokeTemplate>,
}

impl InvokeConn {
    /// Opens a connection for `template`'s server.
    pub async fn connect(template: Arc<InvokeTemplate>) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(&template.authority)
            .await
            .with_context(|| format!("connect to {}", template.authority))?;
        stream.set_nodelay(true).context("set TCP_NODELAY")?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("start an HTTP/1.1 connection")?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes; errors show up on sends.
            let _ = connection.await;
        });
        Ok(Self { sender, template })
    }

    /// Sends `template`'s request from now on (same server, same connection).
    pub fn set_template(&mut self, template: Arc<InvokeTemplate>) {
        self.template = template;
    }

    /// Sends one invocation and reads its whole response.
    pub async fn invoke(&mut self) -> anyhow::Result<Outcome> {
        let exchange = async {
            self.sender
                .ready()
                .await
                .context("wait for the connection")?;
            let response = self
                .sender
                .send_request(self.template.request())
                .await
                .context("send an invoke")?;
            let status = response.status();
            let function_error = response.headers().contains_key(headers::FUNCTION_ERROR);
            response
                .into_body()
                .collect()
                .await
                .context("read an invoke response")?;
            Ok(if !status.is_success() {
                Outcome::Status(status.as_u16())
            } else if function_error {
                Outcome::FunctionError
            } else {
                Outcome::Ok
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| anyhow::bail!("an invoke took longer than {REQUEST_TIMEOUT:?}"))
    }
}

/// Latencies of successful invocations and a count of the rest.
#[derive(Debug, Default)]
pub struct Samples {
    /// Nanoseconds, unsorted.
    pub latencies_ns: Vec<u64>,
    pub errors: u64,
    /// First failure seen, for the report.
    pub first_error: Option<String>,
}

impl Samples {
    fn record(&mut self, started: Instant, result: anyhow::Result<Outcome>) -> bool {
        match result {
            Ok(Outcome::Ok) => {
                self.latencies_ns
                    .push(started.elapsed().as_nanos().min(u64::MAX as u128) as u64);
                true
            }
            Ok(other) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| match other {
                    Outcome::FunctionError => "function error".to_owned(),
                    Outcome::Status(s) => format!("HTTP {s}"),
                    Outcome::Ok => unreachable!("handled above"),
                });
                true
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
                false
            }
        }
    }

    pub fn merge(&mut self, other: Samples) {
        self.latencies_ns.extend(other.latencies_ns);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// `count` invocations one after another on one connection, stopping early at `time_cap`.
pub async fn sequential(
    template: Arc<InvokeTemplate>,
    count: u64,
    time_cap: Duration,
) -> anyhow::Result<(Samples, Duration)> {
    let mut conn = InvokeConn::connect(template.clone()).await?;
    let mut samples = Samples {
        latencies_ns: Vec::with_capacity(count.min(1 << 20) as usize),
        ..Default::default()
    };
    let started = Instant::now();
    for _ in 0..count {
        if started.elapsed() > time_cap {
            break;
        }
        let t = Instant::now();
        let result = conn.invoke().await;
        if !samples.record(t, result) {
            conn = InvokeConn::connect(template.clone()).await?;
        }
    }
    Ok((samples, started.elapsed()))
}

/// `concurrency` workers, each on its own connection: `warmup_invokes` each (all at once, so the
/// server creates that many environments), then invoking as fast as answers come for `duration`.
/// Returns the measured samples and the measured wall time.
pub async fn closed_loop(
    template: Arc<InvokeTemplate>,
    concurrency: u32,
    warmup_invokes: u32,
    duration: Duration,
) -> anyhow::Result<(Samples, Duration)> {
    // Every worker and this task meet here once all are warmed up: the measured run starts
    // together.
    let barrier = Arc::new(Barrier::new(concurrency as usize + 1));
    let mut workers = Vec::with_capacity(concurrency as usize);
    for _ in 0..concurrency {
        let template = template.clone();
        let barrier = barrier.clone();
        workers.push(tokio::spawn(async move {
            let mut conn = match InvokeConn::connect(template.clone()).await {
                Ok(conn) => Some(conn),
                Err(e) => {
                    barrier.wait().await;
                    return Err(e);
                }
            };
            for _ in 0..warmup_invokes {
                if let Some(c) = conn.as_mut() {
                    if c.invoke().await.is_err() {
                        conn = InvokeConn::connect(template.clone()).await.ok();
                    }
                }
            }
            barrier.wait().await;
            let end = Instant::now() + duration;
            let mut samples = Samples::default();
            while Instant::now() < end {
                let Some(c) = conn.as_mut() else {
                    conn = InvokeConn::connect(template.clone()).await.ok();
                    if conn.is_none() {
                        samples.errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    continue;
                };
                let t = Instant::now();
                let result = c.invoke().await;
                if !samples.record(t, result) {
                    conn = None;
                }
            }
            Ok::<_, anyhow::Error>((samples, Instant::now()))
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut all = Samples::default();
    let mut last_finish = started;
    let mut failure = None;
    for worker in workers {
        match worker.await.context("join a load worker")? {
            Ok((samples, finished)) => {
                all.merge(samples);
                last_finish = last_finish.max(finished);
            }
            Err(e) => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        return Err(e).context("run a load worker");
    }
    Ok((all, last_finish.saturating_duration_since(started)))
}

/// Nearest-rank percentile (`q` in 0..=1) of sorted nanoseconds, as a `Duration`.
pub fn percentile(sorted_ns: &[u64], q: f64) -> Option<Duration> {
    if sorted_ns.is_empty() {
        return None;
    }
    let rank = (q * sorted_ns.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_ns.len()) - 1;
    Some(Duration::from_nanos(sorted_ns[index]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(Duration::from_nanos(50)));
        assert_eq!(percentile(&v, 0.99), Some(Duration::from_nanos(99)));
        assert_eq!(percentile(&v, 0.999), Some(Duration::from_nanos(100)));
        assert_eq!(percentile(&[7], 0.5), Some(Duration::from_nanos(7)));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
