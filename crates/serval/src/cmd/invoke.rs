//! `serval invoke NAME`: a synchronous invocation; the response goes to stdout, a function's
//! error to stderr with a non-zero exit.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;

use super::UsageError;
use crate::client::Client;

/// Options of `serval invoke`.
#[derive(Debug, Clone, clap::Args)]
pub struct InvokeArgs {
    /// Function name (or ARN).
    pub name: String,
    /// The event: inline JSON, `@FILE` to read it from a file, `@-` from stdin (default `{}`).
    #[arg(long, value_name = "JSON|@FILE")]
    pub payload: Option<String>,
    /// Ask for the invocation's log tail (last 4 KB) and print it to stderr.
    #[arg(long)]
    pub log: bool,
}

/// Reads and checks the payload argument: inline JSON, `@file` or `@-` (stdin); `{}` when absent.
/// The bytes are sent exactly as given, after checking they are JSON.
pub fn parse_payload(arg: Option<&str>) -> Result<Bytes, UsageError> {
    let bytes = match arg {
        None => return Ok(Bytes::from_static(b"{}")),
        Some("@-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| UsageError(format!("failed to read the payload from stdin: {e}")))?;
            buf
        }
        Some(arg) => match arg.strip_prefix('@') {
            Some(path) => std::fs::read(path)
                .map_err(|e| UsageError(format!("failed to read the payload file {path}: {e}")))?,
            None => arg.as_bytes().to_vec(),
        },
    };
    serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
        .map_err(|e| UsageError(format!("the payload is not valid JSON: {e}")))?;
    Ok(Bytes::from(bytes))
}

/// Renders a function error body as `error: <errorType>: <errorMessage>` plus its stack trace
/// lines (Python's `stackTrace`, Node's `trace`), one per line.
pub fn render_function_error(function_error: &str, body: &[u8]) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let obj = json.as_ref().and_then(|j| j.as_object());
    let text = |key: &str| {
        obj.and_then(|o| o.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let mut out = String::from("error: ");
    match (text("errorType"), text("errorMessage")) {
        (Some(t), Some(m)) => out.push_str(&format!("{t}: {m}")),
        (Some(t), None) => out.push_str(&t),
        (None, Some(m)) => out.push_str(&format!("{function_error}: {m}")),
        (None, None) => {
            let body = String::from_utf8_lossy(body);
            let body = body.trim();
            if body.is_empty() {
                out.push_str(function_error);
            } else {
                out.push_str(&format!("{function_error}: {body}"));
            }
        }
    }
    out.push('\n');
    let trace = obj.and_then(|o| o.get("stackTrace").or_else(|| o.get("trace")));
    let frames: Vec<String> = match trace {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    for frame in &frames {
        for line in frame.lines() {
            let line = line.trim_end();
            if !line.is_empty() {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Runs `serval invoke`; exit status 1 when the function failed.
pub async fn run(client: &Client, args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let payload = parse_payload(args.payload.as_deref())?;
    let out = client
        .invoke(&args.name, payload, args.log)
        .await
        .with_context(|| format!("invoke function {}", args.name))?;
    if let Some(tail) = &out.log_result {
        match base64::engine::general_purpose::STANDARD.decode(tail) {
            Ok(log) => {
                let mut stderr = std::io::stderr().lock();
                let _ = stderr.write_all(&log);
                if !log.ends_with(b"\n") {
                    let _ = stderr.write_all(b"\n");
                }
            }
            Err(_) => eprintln!("warning: the server sent a log tail that is not base64"),
        }
    }
    if let Some(kind) = &out.function_error {
        eprint!("{}", render_function_error(kind, &out.payload));
        return Ok(ExitCode::from(1));
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out.payload)
        .context("write the response to stdout")?;
    if !out.payload.ends_with(b"\n") {
        stdout
            .write_all(b"\n")
            .context("write the response to stdout")?;
    }
    stdout.flush().context("write the response to stdout")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_payload_is_empty_object() {
        assert_eq!(parse_payload(None).unwrap(), Bytes::from_static(b"{}"));
    }

    #[test]
    fn inline_payload_is_sent_verbatim() {
        assert_eq!(
            parse_payload(Some(r#"{ "a" : 1 }"#)).unwrap(),
            Bytes::from_static(br#"{ "a" : 1 }"#)
        );
    }

    #[test]
    fn reads_payload_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("event.json");
        std::fs::write(&path, r#"[1, 2, "x"]"#).unwrap();
        let arg = format!("@{}", path.display());
        assert_eq!(
            parse_payload(Some(&arg)).unwrap(),
            Bytes::from_static(br#"[1, 2, "x"]"#)
        );
    }

    #[test]
    fn rejects_invalid_json_payload() {
        let err = parse_payload(Some("{not json")).unwrap_err();
        assert!(err.0.contains("not valid JSON"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, "{").unwrap();
        assert!(parse_payload(Some(&format!("@{}", path.display()))).is_err());
    }

    #[test]
    fn rejects_missing_payload_file() {
        let err = parse_payload(Some("@/nonexistent/serval/event.json")).unwrap_err();
        assert!(err.0.contains("failed to read the payload file"), "{err}");
    }

    #[test]
    fn renders_python_error_with_stack_trace() {
        let body = br#"{"errorMessage":"boom","errorType":"ValueError","requestId":"r","stackTrace":["  File \"/var/task/app.py\", line 2, in handler\n    raise ValueError(\"boom\")\n"]}"#;
        assert_eq!(
            render_function_error("Unhandled", body),
            "error: ValueError: boom\n  File \"/var/task/app.py\", line 2, in handler\n    raise ValueError(\"boom\")\n"
        );
    }

    #[test]
    fn renders_node_error_and_platform_errors() {
        let node = br#"{"errorType":"Error","errorMessage":"bad","trace":["Error: bad","    at handler (/var/task/index.js:1:1)"]}"#;
        assert_eq!(
            render_function_error("Unhandled", node),
            "error: Error: bad\nError: bad\n    at handler (/var/task/index.js:1:1)\n"
        );
        let timeout = br#"{"errorType":"Sandbox.Timedout","errorMessage":"RequestId: x Error: Task timed out after 1.00 seconds"}"#;
        assert_eq!(
            render_function_error("Unhandled", timeout),
            "error: Sandbox.Timedout: RequestId: x Error: Task timed out after 1.00 seconds\n"
        );
        assert_eq!(
            render_function_error("Unhandled", b"oops"),
            "error: Unhandled: oops\n"
        );
    }
}
