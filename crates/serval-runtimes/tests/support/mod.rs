//! A fake Lambda Runtime API (std::net, one thread per connection) and a way to start Serval's
//! bootstraps against it with the clean environment the engine gives them.
//!
//! The server parses every complete request in its buffer after each read, so two requests
//! arriving in one segment (the bootstraps' pipelined POST + GET) are handled in order; it
//! counts such reads in [`Stats::pipelined_reads`].

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serval_model::Runtime;
use serval_runtimes::RuntimeSet;

/// One invocation to hand out on GET /next.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub body: Vec<u8>,
    pub deadline_ms: u64,
    pub extra_headers: Vec<(String, String)>,
}

/// What the runtime reported.
#[derive(Debug, Clone)]
pub enum Report {
    Response {
        request_id: String,
        body: Vec<u8>,
    },
    Error {
        request_id: String,
        error_type: Option<String>,
        body: Vec<u8>,
    },
    InitError {
        error_type: Option<String>,
        body: Vec<u8>,
    },
}

impl Report {
    pub fn json(&self) -> serde_json::Value {
        let body = match self {
            Report::Response { body, .. }
            | Report::Error { body, .. }
            | Report::InitError { body, .. } => body,
        };
        serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "report body is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        })
    }
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub next_requests: u64,
    pub pipelined_reads: u64,
    pub first_next_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Invocation>,
    reports: Vec<Report>,
    stats: Stats,
    closed: bool,
}

pub struct FakeApi {
    pub addr: SocketAddr,
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl FakeApi {
    pub fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake runtime api");
        let addr = listener.local_addr().unwrap();
        let shared: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let s = s.clone();
                std::thread::spawn(move || serve_connection(conn, s));
            }
        });
        FakeApi { addr, shared }
    }

    pub fn push(&self, inv: Invocation) {
        let (m, cv) = &*self.shared;
        m.lock().unwrap().queue.push_back(inv);
        cv.notify_all();
    }

    /// Waits for the report about `request_id` (or an init error).
    pub fn wait_report(&self, request_id: &str, timeout: Duration) -> Option<Report> {
        let (m, cv) = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut st = m.lock().unwrap();
        loop {
            if let Some(i) = st.reports.iter().position(|r| match r {
                Report::Response { request_id: id, .. } | Report::Error { request_id: id, .. } => {
                    id == request_id
                }
                Report::InitError { .. } => true,
            }) {
                return Some(match &st.reports[i] {
                    Report::InitError { .. } => st.reports[i].clone(),
                    _ => st.reports.swap_remove(i),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    pub fn wait_init_error(&self, timeout: Duration) -> Option<Report> {
        self.wait_report("\0no-such-request", timeout)
    }

    /// Waits until the runtime has asked for its first invocation.
    pub fn wait_first_next(&self, timeout: Duration) -> Option<Instant> {
        let (m, cv) = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut st = m.lock().unwrap();
        loop {
            if let Some(t) = st.stats.first_next_at {
                return Some(t);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    pub fn stats(&self) -> Stats {
        self.shared.0.lock().unwrap().stats.clone()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let (m, cv) = &*self.shared;
        m.lock().unwrap().closed = true;
        cv.notify_all();
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Takes one complete request off the front of `buf`, if there is one.
fn parse_request(buf: &mut Vec<u8>) -> Option<Request> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let path = first.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().expect("content-length"));
    if buf.len() < end + 4 + len {
        return None;
    }
    let body = buf[end + 4..end + 4 + len].to_vec();
    buf.drain(..end + 4 + len);
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn serve_connection(mut conn: TcpStream, shared: Arc<(Mutex<State>, Condvar)>) {
    conn.set_nodelay(true).ok();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut handled = 0;
        while let Some(req) = parse_request(&mut buf) {
            handled += 1;
            if handled == 2 {
                shared.0.lock().unwrap().stats.pipelined_reads += 1;
            }
            let Some(resp) = handle(req, &shared) else {
                return;
            };
            if conn.write_all(&resp).is_err() {
                return;
            }
        }
    }
}

fn response(status: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn handle(req: Request, shared: &Arc<(Mutex<State>, Condvar)>) -> Option<Vec<u8>> {
    let (m, cv) = &**shared;
    let error_type = req
        .headers
        .iter()
        .find(|(k, _)| k == "lambda-runtime-function-error-type")
        .map(|(_, v)| v.clone());
    let p = req.path.strip_prefix("/2018-06-01/runtime/").unwrap_or("");
    let accepted = || response("202 Accepted", &[], br#"{"status":"OK"}"#);
    match (req.method.as_str(), p) {
        ("GET", "invocation/next") => {
            let mut st = m.lock().unwrap();
            st.stats.next_requests += 1;
            if st.stats.first_next_at.is_none() {
                st.stats.first_next_at = Some(Instant::now());
                cv.notify_all();
            }
            let inv = loop {
                if st.closed {
                    return None;
                }
                if let Some(inv) = st.queue.pop_front() {
                    break inv;
                }
                st = cv.wait(st).unwrap();
            };
            drop(st);
            let mut headers =
                vec![
                ("Lambda-Runtime-Aws-Request-Id".to_owned(), inv.request_id.clone()),
                ("Lambda-Runtime-Deadline-Ms".to_owned(), inv.deadline_ms.to_string()),
                (
                    "Lambda-Runtime-Invoked-Function-Arn".to_owned(),
                    "arn:aws:lambda:us-east-1:000000000000:function:fn".to_owned(),
                ),
                (
                    "Lambda-Runtime-Trace-Id".to_owned(),
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
                        .to_owned(),
                ),
                ("Content-Type".to_owned(), "application/json".to_owned()),
            ];
            headers.extend(inv.extra_headers.iter().cloned());
            Some(response("200 OK", &headers, &inv.body))
        }
        ("POST", "init/error") => {
            m.lock().unwrap().reports.push(Report::InitError {
                error_type,
                body: req.body,
            });
            cv.notify_all();
            Some(accepted())
        }
        ("POST", rest) if rest.starts_with("invocation/") => {
            let rest = &rest["invocation/".len()..];
            let (id, kind) = rest.split_once('/').unwrap_or((rest, ""));
            let report = match kind {
                "response" => Report::Response {
                    request_id: id.to_owned(),
                    body: req.body,
                },
                "error" => Report::Error {
                    request_id: id.to_owned(),
                    error_type,
                    body: req.body,
                },
                _ => return Some(response("404 Not Found", &[], b"{}")),
            };
            m.lock().unwrap().reports.push(report);
            cv.notify_all();
            Some(accepted())
        }
        _ => Some(response("404 Not Found", &[], b"{}")),
    }
}

// ---------------------------------------------------------------------------------------------

/// The runtimes of this machine, discovered once per test binary.
pub fn runtimes() -> &'static RuntimeSet {
    static SET: OnceLock<RuntimeSet> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("serval-runtimes-test-{}", std::process::id()));
        RuntimeSet::discover(&dir).expect("discover runtimes")
    })
}

/// Whether the family's interpreter is here; prints why a test is skipped when not.
pub fn available(runtime: Runtime, test: &str) -> bool {
    match runtimes().launch(runtime, Path::new("/nonexistent")) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping {test}: {e}");
            false
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A running environment: a bootstrap process, its task root, its captured log.
pub struct Env {
    pub api: FakeApi,
    pub child: Child,
    pub started_at: Instant,
    pub log: Arc<Mutex<Vec<String>>>,
    _task_root: tempfile::TempDir,
}

impl Env {
    /// Writes `files` into a fresh task root and starts `runtime` on it with `handler`.
    pub fn start(runtime: Runtime, handler: &str, files: &[(&str, &str)]) -> Env {
        Self::start_with(runtime, handler, files, &[])
    }

    pub fn start_with(
        runtime: Runtime,
        handler: &str,
        files: &[(&str, &str)],
        user_env: &[(&str, &str)],
    ) -> Env {
        let task = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let p = task.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        let api = FakeApi::start();
        let (child, log, started_at) = spawn(
            runtime,
            handler,
            task.path(),
            &api.addr.to_string(),
            user_env,
        );
        Env {
            api,
            child,
            started_at,
            log,
            _task_root: task,
        }
    }

    pub fn invoke(&self, body: &str) -> Report {
        self.invoke_with(body, &[])
    }

    pub fn invoke_with(&self, body: &str, extra_headers: &[(&str, &str)]) -> Report {
        let id = format!(
            "req-{:08}-0000-4000-8000-{:012}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        self.api.push(Invocation {
            request_id: id.clone(),
            body: body.as_bytes().to_vec(),
            deadline_ms: now_ms() + 3000,
            extra_headers: extra_headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
        match self.api.wait_report(&id, Duration::from_secs(20)) {
            Some(r) => r,
            None => panic!("no report for {id}; log:\n{}", self.log_text()),
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits up to `timeout` for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return Some(l.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a bootstrap with the engine's clean environment; stdout and stderr share one pipe.
pub fn spawn(
    runtime: Runtime,
    handler: &str,
    task_root: &Path,
    api_addr: &str,
    user_env: &[(&str, &str)],
) -> (Child, Arc<Mutex<Vec<String>>>, Instant) {
    let set = runtimes();
    let spec = set.launch(runtime, task_root).expect("launch spec");
    let tmp: PathBuf = task_root.join(".tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let (reader, writer) = std::io::pipe().expect("pipe");
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api_addr)
        .env("_HANDLER", handler)
        .env("LAMBDA_TASK_ROOT", task_root)
        .env("LAMBDA_RUNTIME_DIR", set.runtime_dir())
        .env("AWS_LAMBDA_FUNCTION_NAME", "fn")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/fn")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2024/01/01/[$LATEST]abcdef")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EXECUTION_ENV", format!("AWS_Lambda_{runtime}"))
        .env("TZ", ":UTC")
        .env("LANG", "en_US.UTF-8")
        .env("PATH", set.search_path())
        .env("TMPDIR", &tmp)
        .env("HOME", &tmp)
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .env("AWS_SESSION_TOKEN", "token")
        .envs(user_env.iter().copied())
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(task_root)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer);
    let started_at = Instant::now();
    let child = cmd.spawn().expect("spawn bootstrap");
    drop(cmd); // closes our copies of the pipe's write end
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).split(b'\n') {
            let Ok(line) = line else { return };
            l.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&line).into_owned());
        }
    });
    (child, log, started_at)
}
