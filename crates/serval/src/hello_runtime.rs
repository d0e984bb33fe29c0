//! `serval __hello-runtime` (hidden): the smallest useful Lambda Runtime API client, answering
//! every invocation with `{"ok":true}`. `serval bench` ships it as a `provided.al2023`
//! function's `bootstrap` to measure the platform's own overhead with a runtime that costs
//! next to nothing.
//!
//! Plain blocking std: one keep-alive TCP connection with `TCP_NODELAY`, hand-written HTTP/1.1,
//! each request in one write, and the response for one invocation pipelined with the `GET next`
//! for the following one in the same write. No tokio, no tracing: it starts in about a
//! millisecond.
//!
//! Not for: real functions (use `lambda_runtime` or `awslambdaric`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;

/// The Runtime API's path for the next invocation.
const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
/// The response every invocation gets.
const RESPONSE_BODY: &[u8] = br#"{"ok":true}"#;
/// Limits on what the runtime reads from the Runtime API (it is trusted, but bounded anyway).
const MAX_LINE_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Consecutive reconnects without progress after which the runtime gives up.
const MAX_RECONNECTS: u32 = 5;

/// Entry point of `serval __hello-runtime`: serves `AWS_LAMBDA_RUNTIME_API` until the connection
/// is gone for good.
pub fn main() -> ExitCode {
    let Some(api) = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .ok()
        .filter(|a| !a.is_empty())
    else {
        eprintln!("hello-runtime: AWS_LAMBDA_RUNTIME_API is not set");
        return ExitCode::from(1);
    };
    match serve(&api, None) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello-runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// One response from the Runtime API.
#[derive(Debug)]
struct Response {
    status: u16,
    request_id: Option<String>,
    close: bool,
    /// The body when it is small enough to be a probe (see [`probe_target`]).
    body: Vec<u8>,
}

/// Largest event body kept to look for a probe.
const PROBE_MAX_BYTES: usize = 512;
/// The prefix of an event asking the runtime to report when it received it: the event
/// `{"probe":"<ip:port>",...}` is sent back, as is, in one UDP datagram to `ip:port` as soon as
/// it arrives. `serval bench --async` measures accept-to-handler-start latency with it.
const PROBE_PREFIX: &[u8] = br#"{"probe":""#;

/// The address an event asks to be reported to, if it is a probe.
fn probe_target(body: &[u8]) -> Option<std::net::SocketAddr> {
    let rest = body.strip_prefix(PROBE_PREFIX)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The keep-alive connection to the Runtime API.
struct Conn {
    api: String,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn connect(api: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(api)?;
        stream.set_nodelay(true)?;
        let reader = BufReader::with_capacity(16 * 1024, stream.try_clone()?);
        Ok(Self {
            api: api.to_owned(),
            writer: stream,
            reader,
        })
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the runtime API closed the connection",
            ));
        }
        if !line.ends_with(b"\n") {
            return Err(invalid("header line too long"));
        }
        let text = String::from_utf8(line).map_err(|_| invalid("header line is not UTF-8"))?;
        Ok(text.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// Reads one whole response (the body is read and dropped).
    fn read_response(&mut self) -> io::Result<Response> {
        let status_line = self.read_line()?;
        let mut parts = status_line.split_whitespace();
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(invalid("not an HTTP/1.x response"));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        let mut close = version == "HTTP/1.0";
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        let mut request_id = None;
        for _ in 0..=MAX_HEADERS {
            let line = self.read_line()?;
            if line.is_empty() {
                let body_len = if chunked {
                    self.skip_chunked()?;
                    0
                } else {
                    content_length.unwrap_or(0)
                };
                if body_len > MAX_BODY_BYTES {
                    return Err(invalid("response body too large"));
                }
                let mut body = Vec::new();
                if body_len <= PROBE_MAX_BYTES {
                    (&mut self.reader)
                        .take(body_len as u64)
                        .read_to_end(&mut body)?;
                } else {
                    io::copy(
                        &mut (&mut self.reader).take(body_len as u64),
                        &mut io::sink(),
                    )?;
                }
                return Ok(Response {
                    status,
                    request_id,
                    close,
                    body,
                });
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(invalid("malformed header"));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(value.parse().map_err(|_| invalid("bad content-length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("lambda-runtime-aws-request-id") {
                request_id = Some(value.to_owned());
            }
        }
        Err(invalid("too many headers"))
    }

    fn skip_chunked(&mut self) -> io::Result<()> {
        let mut total = 0usize;
        loop {
            let line = self.read_line()?;
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| invalid("bad chunk size"))?;
            total = total.saturating_add(size);
            if total > MAX_BODY_BYTES {
                return Err(invalid("response body too large"));
            }
            if size == 0 {
                // Trailers until the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(());
            }
            io::copy(&mut (&mut self.reader).take(size as u64), &mut io::sink())?;
            self.read_line()?;
        }
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

fn get_next(api: &str) -> Vec<u8> {
    format!("GET {NEXT_PATH} HTTP/1.1\r\nHost: {api}\r\n\r\n").into_bytes()
}

fn post_response(api: &str, request_id: &str) -> Vec<u8> {
    let mut out = format!(
        "POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\nHost: {api}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        RESPONSE_BODY.len()
    )
    .into_bytes();
    out.extend_from_slice(RESPONSE_BODY);
    out
}

/// Whether a request id can go into a path as is.
fn safe_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Sends `request` and reads its response; on a broken connection reconnects and sends it
/// again, up to `MAX_RECONNECTS` times.
fn exchange(conn: &mut Conn, request: &[u8]) -> io::Result<Response> {
    let mut attempts = 0;
    loop {
        let result = conn.send(request).and_then(|()| conn.read_response());
        match result {
            Ok(response) => return Ok(response),
            Err(e) if attempts < MAX_RECONNECTS && is_connection_error(&e) => {
                attempts += 1;
                *conn = Conn::connect(&conn.api.clone())?;
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Serves invocations from the Runtime API at `api` (`host:port`); stops after
/// `max_invocations` when given (tests), else runs until the API goes away.
pub fn serve(api: &str, max_invocations: Option<u64>) -> io::Result<()> {
    let mut conn = Conn::connect(api)?;
    let next_request = get_next(api);
    let mut handled = 0u64;
    let mut probe_socket: Option<Option<std::net::UdpSocket>> = None;
    let mut next = exchange(&mut conn, &next_request)?;
    loop {
        if next.status != 200 {
            return Err(io::Error::other(format!(
                "GET next answered {}",
                next.status
            )));
        }
        let id = next
            .request_id
            .take()
            .ok_or_else(|| invalid("GET next answered without Lambda-Runtime-Aws-Request-Id"))?;
        if !safe_request_id(&id) {
            return Err(invalid("unexpected characters in the request id"));
        }
        handled += 1;
        let last = max_invocations.is_some_and(|m| handled >= m);
        if let Some(target) = probe_target(&next.body) {
            let socket =
                probe_socket.get_or_insert_with(|| std::net::UdpSocket::bind(("0.0.0.0", 0)).ok());
            if let Some(socket) = socket {
                // Best effort: a lost datagram is a lost sample, not an error.
                let _ = socket.send_to(&next.body, target);
            }
        }

        // The response and the next GET in one write: one round trip per invocation.
        let mut batch = post_response(api, &id);
        if !last {
            batch.extend_from_slice(&next_request);
        }
        let posted = exchange(&mut conn, &batch)?;
        if !(200..300).contains(&posted.status) {
            eprintln!(
                "hello-runtime: posting the response for {id} answered {}",
                posted.status
            );
        }
        if last {
            return Ok(());
        }
        next = if posted.close {
            // The server dropped the pipelined GET with the connection: ask again.
            conn = Conn::connect(api)?;
            exchange(&mut conn, &next_request)?
        } else {
            match conn.read_response() {
                Ok(r) => r,
                Err(e) if is_connection_error(&e) => {
                    conn = Conn::connect(api)?;
                    exchange(&mut conn, &next_request)?
                }
                Err(e) => return Err(e),
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Reads one request (head + Content-Length body) from a test server's connection.
    fn read_request(reader: &mut BufReader<TcpStream>) -> (String, String) {
        let mut head = String::new();
        let mut content_length = 0;
        loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "client hung up");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap();
            }
            head.push_str(&line);
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).unwrap();
        (head, String::from_utf8(body).unwrap())
    }

    fn event(id: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: {id}\r\n\
             Lambda-Runtime-Deadline-Ms: 99999999999999\r\nContent-Length: 7\r\n\r\n{{\"a\":1}}"
        )
    }

    const ACCEPTED: &str =
        "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"OK\"}";

    #[test]
    fn answers_invocations_on_one_pipelined_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            let mut seen = Vec::new();
            let (head, _) = read_request(&mut reader);
            seen.push(head.lines().next().unwrap().to_owned());
            writer.write_all(event("req-1").as_bytes()).unwrap();
            let (head, body) = read_request(&mut reader);
            assert!(head.contains("Content-Type: application/json"), "{head}");
            seen.push(format!("{} {body}", head.lines().next().unwrap()));
            // The next GET was pipelined behind the POST: it is already buffered or in flight.
            writer.write_all(ACCEPTED.as_bytes()).unwrap();
            let (head, _) = read_request(&mut reader);
            seen.push(head.lines().next().unwrap().to_owned());
            // A chunked event this time.
            writer
                .write_all(
                    b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: req-2\r\n\
                      Transfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n0\r\n\r\n",
                )
                .unwrap();
            let (head, body) = read_request(&mut reader);
            seen.push(format!("{} {body}", head.lines().next().unwrap()));
            writer.write_all(ACCEPTED.as_bytes()).unwrap();
            // No further request on this connection: the runtime stopped after two.
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
            seen
        });
        serve(&addr, Some(2)).unwrap();
        let seen = server.join().unwrap();
        assert_eq!(
            seen,
            [
                "GET /2018-06-01/runtime/invocation/next HTTP/1.1",
                r#"POST /2018-06-01/runtime/invocation/req-1/response HTTP/1.1 {"ok":true}"#,
                "GET /2018-06-01/runtime/invocation/next HTTP/1.1",
                r#"POST /2018-06-01/runtime/invocation/req-2/response HTTP/1.1 {"ok":true}"#,
            ]
        );
    }

    #[test]
    fn reconnects_when_the_server_closes_after_a_response() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let mut posts = Vec::new();
            // First connection: one event, then a response with Connection: close.
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            read_request(&mut reader);
            writer.write_all(event("a-1").as_bytes()).unwrap();
            let (head, _) = read_request(&mut reader);
            posts.push(head.lines().next().unwrap().to_owned());
            // Take the pipelined GET off the wire (so closing sends FIN, not RST), then drop it.
            read_request(&mut reader);
            writer
                .write_all(
                    b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                )
                .unwrap();
            drop(writer);
            drop(reader);
            // Second connection: the runtime asks for the next event again.
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            let (head, _) = read_request(&mut reader);
            assert!(head.starts_with("GET /2018-06-01/runtime/invocation/next"));
            writer.write_all(event("a-2").as_bytes()).unwrap();
            let (head, _) = read_request(&mut reader);
            posts.push(head.lines().next().unwrap().to_owned());
            writer.write_all(ACCEPTED.as_bytes()).unwrap();
            posts
        });
        serve(&addr, Some(2)).unwrap();
        let posts = server.join().unwrap();
        assert_eq!(
            posts,
            [
                "POST /2018-06-01/runtime/invocation/a-1/response HTTP/1.1",
                "POST /2018-06-01/runtime/invocation/a-2/response HTTP/1.1",
            ]
        );
    }

    #[test]
    fn recognizes_probe_events() {
        assert_eq!(
            probe_target(br#"{"probe":"127.0.0.1:4000","seq":3}"#),
            Some("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(probe_target(br#"{"probe":"nonsense"}"#), None);
        assert_eq!(probe_target(br#"{"ok":true}"#), None);
    }

    #[test]
    fn refuses_an_unsafe_request_id() {
        assert!(safe_request_id("8f5e-11aa_b.c"));
        assert!(!safe_request_id("a/../b"));
        assert!(!safe_request_id("a\r\nX: y"));
        assert!(!safe_request_id(""));
    }
}
