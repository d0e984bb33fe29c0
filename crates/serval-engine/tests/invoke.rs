//! Engine tests against real runtimes: a real store, the process sandbox, Serval's own
//! bootstraps, real `python3`/`node`/`sh` processes. No HTTP control plane involved.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serval_engine::{Engine, EngineConfig, InvokeOutcome, InvokeRequest, InvokeResult};
use serval_model::{
    Architecture, EnvironmentVars, FunctionConfig, FunctionName, FunctionState, Handler,
    LastUpdateStatus, PackageType, Runtime,
};
use serval_runtimes::RuntimeSet;
use serval_sandbox::{AnySandbox, ProcessSandbox};
use serval_store::Store;

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    engine: Engine,
}

fn zip_of(files: &[(&str, &str, u32)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content, mode) in files {
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        w.start_file(*name, opts).unwrap();
        w.write_all(content.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

impl Harness {
    fn new(tweak: impl FnOnce(&mut EngineConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runtimes = RuntimeSet::discover(&dir.path().join("runtime")).unwrap();
        let mut config = EngineConfig::new("us-east-1", dir.path().join("envs"));
        tweak(&mut config);
        let engine = Engine::new(
            config,
            AnySandbox::Process(ProcessSandbox::new().unwrap()),
            Arc::new(runtimes),
            store.clone(),
            Duration::from_secs(86400),
        )
        .unwrap();
        Self {
            _dir: dir,
            store,
            engine,
        }
    }

    fn deploy(
        &self,
        name: &str,
        runtime: Runtime,
        handler: &str,
        files: &[(&str, &str, u32)],
        timeout_secs: u32,
        env: &[(&str, &str)],
    ) -> FunctionName {
        let code = self.store.put_code(&zip_of(files)).unwrap();
        let name = FunctionName::parse(name).unwrap();
        let vars: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.engine.deploy(FunctionConfig {
            name: name.clone(),
            runtime,
            role: "arn:aws:iam::000000000000:role/r".into(),
            handler: Handler::parse(handler).unwrap(),
            description: String::new(),
            timeout_secs,
            memory_mb: 128,
            ephemeral_storage_mb: 512,
            environment: EnvironmentVars::new(vars).unwrap(),
            architecture: Architecture::X86_64,
            package_type: PackageType::Zip,
            code_sha256_hex: code.sha256_hex,
            code_size: code.zip_size,
            last_modified: "2026-01-01T00:00:00.000+0000".into(),
            revision_id: uuid_like(),
            version: "$LATEST".into(),
            state: FunctionState::Active,
            last_update_status: LastUpdateStatus::Successful,
        });
        name
    }

    async fn invoke(&self, name: &FunctionName, payload: &str, tail: bool) -> InvokeOutcome {
        self.engine
            .invoke(InvokeRequest {
                qualifier: None,
                request_id: None,
                function: name.clone(),
                payload: Bytes::copy_from_slice(payload.as_bytes()),
                client_context: None,
                log_tail: tail,
            })
            .await
            .unwrap()
    }
}

fn uuid_like() -> String {
    serval_model::RequestId::new().to_string()
}

fn success(o: &InvokeOutcome) -> serde_json::Value {
    match &o.result {
        InvokeResult::Success(b) => serde_json::from_slice(b).unwrap(),
        InvokeResult::FunctionError(d) => panic!(
            "expected success, got {} {}",
            d.error_type,
            String::from_utf8_lossy(&d.body)
        ),
    }
}

fn failure(o: &InvokeOutcome) -> (String, serde_json::Value) {
    match &o.result {
        InvokeResult::FunctionError(d) => (
            d.error_type.clone(),
            serde_json::from_slice(&d.body).unwrap(),
        ),
        InvokeResult::Success(b) => panic!("expected failure, got {}", String::from_utf8_lossy(b)),
    }
}

fn tail(o: &InvokeOutcome) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(o.log_tail.as_ref().unwrap())
            .unwrap(),
    )
    .unwrap()
}

const PY_COUNTER: &str = "import os\ncount = 0\ndef handler(event, context):\n    global count\n    count += 1\n    print('hello from', context.aws_request_id)\n    return {'count': count, 'pid': os.getpid(), 'event': event, 'fn': context.function_name, 'env': os.environ.get('GREETING')}\n";

#[tokio::test]
async fn python_function_runs_and_reuses_its_warm_environment() {
    let h = Harness::new(|_| {});
    let f = h.deploy(
        "py",
        Runtime::Python312,
        "app.handler",
        &[("app.py", PY_COUNTER, 0o644)],
        3,
        &[("GREETING", "hi")],
    );
    let first = h.invoke(&f, r#"{"a":1}"#, true).await;
    let v = success(&first);
    assert_eq!(v["count"], 1);
    assert_eq!(v["event"]["a"], 1);
    assert_eq!(v["fn"], "py");
    assert_eq!(v["env"], "hi");
    assert_eq!(first.executed_version, "$LATEST");
    let log = tail(&first);
    assert!(
        log.contains(&format!(
            "START RequestId: {} Version: $LATEST",
            first.request_id
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("hello from {}", first.request_id)),
        "{log}"
    );
    assert!(
        log.contains("Init Duration:"),
        "cold start reports init: {log}"
    );
    let second = h.invoke(&f, "{}", true).await;
    let v2 = success(&second);
    assert_eq!(
        v2["count"], 2,
        "module state survives in a warm environment"
    );
    assert_eq!(v2["pid"], v["pid"]);
    assert!(!tail(&second).contains("Init Duration:"));
}

#[tokio::test]
async fn concurrent_invocations_get_distinct_environments() {
    let h = Harness::new(|_| {});
    let code = "import os, time\ndef handler(e, c):\n    time.sleep(0.3)\n    return os.getpid()\n";
    let f = h.deploy(
        "par",
        Runtime::Python312,
        "app.handler",
        &[("app.py", code, 0o644)],
        5,
        &[],
    );
    let (a, b, c) = tokio::join!(
        h.invoke(&f, "{}", false),
        h.invoke(&f, "{}", false),
        h.invoke(&f, "{}", false)
    );
    let pids: std::collections::HashSet<i64> = [a, b, c]
        .iter()
        .map(|o| success(o).as_i64().unwrap())
        .collect();
    assert_eq!(pids.len(), 3);
}

#[tokio::test]
async fn handler_exception_is_a_function_error_and_keeps_the_environment() {
    let h = Harness::new(|_| {});
    let code = "import os\ndef handler(e, c):\n    if e.get('fail'):\n        raise ValueError('bad input')\n    return os.getpid()\n";
    let f = h.deploy(
        "err",
        Runtime::Python312,
        "app.handler",
        &[("app.py", code, 0o644)],
        3,
        &[],
    );
    let pid = success(&h.invoke(&f, "{}", false).await);
    let (ty, body) = failure(&h.invoke(&f, r#"{"fail":true}"#, false).await);
    assert_eq!(ty, "ValueError");
    assert_eq!(body["errorMessage"], "bad input");
    assert!(body["stackTrace"].is_array());
    assert_eq!(success(&h.invoke(&f, "{}", false).await), pid);
}

#[tokio::test]
async fn timeout_kills_the_environment_and_the_next_invoke_starts_fresh() {
    let h = Harness::new(|_| {});
    let code = "import os, time\ndef handler(e, c):\n    if e.get('sleep'):\n        time.sleep(30)\n    return os.getpid()\n";
    let f = h.deploy(
        "slow",
        Runtime::Python312,
        "app.handler",
        &[("app.py", code, 0o644)],
        1,
        &[],
    );
    let pid = success(&h.invoke(&f, "{}", false).await).as_i64().unwrap();
    let (ty, body) = failure(&h.invoke(&f, r#"{"sleep":true}"#, false).await);
    assert_eq!(ty, "Sandbox.Timedout");
    assert!(body["errorMessage"]
        .as_str()
        .unwrap()
        .ends_with("Task timed out after 1.00 seconds"));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "timed-out environment's process is gone"
    );
    let fresh = success(&h.invoke(&f, "{}", false).await).as_i64().unwrap();
    assert_ne!(fresh, pid);
}

#[tokio::test]
async fn runtime_exit_and_init_failure_are_reported_and_not_reused() {
    let h = Harness::new(|_| {});
    let code = "import os\ndef handler(e, c):\n    os._exit(3)\n";
    let f = h.deploy(
        "exit",
        Runtime::Python312,
        "app.handler",
        &[("app.py", code, 0o644)],
        3,
        &[],
    );
    let (ty, body) = failure(&h.invoke(&f, "{}", false).await);
    assert_eq!(ty, "Runtime.ExitError");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("exit status 3"),
        "{body}"
    );

    let g = h.deploy(
        "init",
        Runtime::Python312,
        "missing.handler",
        &[("app.py", code, 0o644)],
        3,
        &[],
    );
    for _ in 0..2 {
        let (ty, body) = failure(&h.invoke(&g, "{}", false).await);
        assert_eq!(ty, "Runtime.ImportModuleError", "{body}");
    }
    assert_eq!(h.engine.stats().environments, 0);
}

#[tokio::test]
async fn memory_over_the_limit_is_out_of_memory() {
    let h = Harness::new(|_| {});
    let code = "import time\ndef handler(e, c):\n    hog = [bytearray(16 * 1024 * 1024) for _ in range(20)]\n    time.sleep(2)\n    return len(hog)\n";
    let f = h.deploy(
        "hog",
        Runtime::Python312,
        "app.handler",
        &[("app.py", code, 0o644)],
        10,
        &[],
    );
    let (ty, _) = failure(&h.invoke(&f, "{}", false).await);
    assert_eq!(ty, "Runtime.OutOfMemory");
}

#[tokio::test]
async fn provided_bootstrap_shell_script_speaks_the_runtime_api() {
    let h = Harness::new(|_| {});
    let bootstrap = r#"#!/bin/bash
set -eu
host=${AWS_LAMBDA_RUNTIME_API%:*}; port=${AWS_LAMBDA_RUNTIME_API#*:}
while true; do
  exec 3<>/dev/tcp/$host/$port
  printf 'GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
  id=""; len=0
  while IFS= read -r line <&3; do
    line=${line%$'\r'}
    [ -z "$line" ] && break
    case "${line,,}" in
      lambda-runtime-aws-request-id:*) id=${line#*: };;
      content-length:*) len=${line#*: };;
    esac
  done
  body=$(head -c "$len" <&3)
  exec 3>&-
  echo "got $body"
  resp="{\"echo\":$body}"
  exec 3<>/dev/tcp/$host/$port
  printf 'POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' "$id" "${#resp}" "$resp" >&3
  cat <&3 >/dev/null
  exec 3>&-
done
"#;
    let f = h.deploy(
        "sh",
        Runtime::ProvidedAl2023,
        "unused",
        &[("bootstrap", bootstrap, 0o755)],
        3,
        &[],
    );
    let o = h.invoke(&f, r#"{"x":1}"#, true).await;
    assert_eq!(success(&o)["echo"]["x"], 1);
    assert!(tail(&o).contains("got {\"x\":1}"));
    let missing = h.deploy(
        "nobootstrap",
        Runtime::Provided,
        "x",
        &[("readme.txt", "no", 0o644)],
        3,
        &[],
    );
    let (ty, _) = failure(&h.invoke(&missing, "{}", false).await);
    assert_eq!(ty, "Runtime.InvalidEntrypoint");
}

#[tokio::test]
async fn node_function_runs() {
    let h = Harness::new(|_| {});
    let code = "exports.handler = async (event, context) => ({ got: event, name: context.functionName });\n";
    let f = h.deploy(
        "node",
        Runtime::Nodejs20,
        "index.handler",
        &[("index.js", code, 0o644)],
        5,
        &[],
    );
    let v = success(&h.invoke(&f, r#"{"n":2}"#, false).await);
    assert_eq!(v["got"]["n"], 2);
    assert_eq!(v["name"], "node");
}

#[tokio::test]
async fn concurrency_limit_rejects_excess_invocations() {
    let h = Harness::new(|c| c.max_concurrency = 1);
    let code = "import time\ndef handler(e, c):\n    time.sleep(0.5)\n    return 1\n";
    let f = h.deploy(
        "busy",
        Runtime::Python312,
        "app.handler",
        &[("app.py", code, 0o644)],
        5,
        &[],
    );
    let req = || InvokeRequest {
        qualifier: None,
        request_id: None,
        function: f.clone(),
        payload: Bytes::from_static(b"{}"),
        client_context: None,
        log_tail: false,
    };
    let (a, b) = tokio::join!(h.engine.invoke(req()), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.engine.invoke(req()).await
    });
    assert!(a.is_ok());
    assert!(matches!(
        b,
        Err(serval_engine::InvokeError::TooManyRequests { .. })
    ));
}

#[tokio::test]
async fn update_uses_new_environments_and_idle_ones_are_reaped() {
    let h = Harness::new(|c| c.keep_alive = Duration::from_millis(300));
    let v1 = "def handler(e, c):\n    return 1\n";
    let f = h.deploy(
        "upd",
        Runtime::Python312,
        "app.handler",
        &[("app.py", v1, 0o644)],
        3,
        &[],
    );
    assert_eq!(success(&h.invoke(&f, "{}", false).await), 1);
    let v2 = "def handler(e, c):\n    return 2\n";
    h.deploy(
        "upd",
        Runtime::Python312,
        "app.handler",
        &[("app.py", v2, 0o644)],
        3,
        &[],
    );
    assert_eq!(success(&h.invoke(&f, "{}", false).await), 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        h.engine.stats().environments,
        0,
        "idle environments reaped after keep-alive"
    );
}

#[tokio::test]
async fn an_abandoned_invocation_finishes_and_its_environment_is_reused() {
    let h = Harness::new(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("done");
    let code = "import os, time\ndef handler(e, c):\n    if e.get('slow'):\n        time.sleep(0.5)\n        open(os.environ['MARKER'], 'w').write(c.aws_request_id)\n    return os.getpid()\n";
    let f = h.deploy(
        "abandon",
        Runtime::Python312,
        "app.handler",
        &[("app.py", code, 0o644)],
        5,
        &[("MARKER", marker.to_str().unwrap())],
    );
    let pid = success(&h.invoke(&f, "{}", false).await);
    // The caller gives up after 100 ms, as a client whose connection closed.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        h.invoke(&f, r#"{"slow":true}"#, false),
    )
    .await;
    assert!(gave_up.is_err());
    for _ in 0..100 {
        if marker.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(marker.exists(), "the abandoned invocation ran to its end");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        success(&h.invoke(&f, "{}", false).await),
        pid,
        "its environment went back to the pool"
    );
}

#[tokio::test]
async fn a_bootstrap_the_kernel_cannot_execute_is_an_invalid_entrypoint() {
    let h = Harness::new(|_| {});
    let f = h.deploy(
        "badshebang",
        Runtime::ProvidedAl2023,
        "x",
        &[("bootstrap", "#!/nonexistent/interpreter\n", 0o755)],
        3,
        &[],
    );
    for _ in 0..2 {
        let (ty, body) = failure(&h.invoke(&f, "{}", false).await);
        assert_eq!(ty, "Runtime.InvalidEntrypoint", "{body}");
        assert!(
            body["errorMessage"].as_str().unwrap().contains("fork/exec"),
            "{body}"
        );
    }
    // Without a shebang the kernel refuses the file (ENOEXEC); it is not run by /bin/sh.
    let g = h.deploy(
        "garbage",
        Runtime::ProvidedAl2023,
        "x",
        &[("bootstrap", "\u{1}\u{2}garbage\n", 0o755)],
        3,
        &[],
    );
    let (ty, body) = failure(&h.invoke(&g, "{}", false).await);
    assert!(
        ty == "Runtime.ExitError" || ty == "Runtime.InvalidEntrypoint",
        "{body}"
    );
    // The supervisor removes a dead environment's directory just after reporting its exit.
    let envs = h._dir.path().join("envs");
    let mut leftovers = usize::MAX;
    for _ in 0..100 {
        leftovers = std::fs::read_dir(&envs).unwrap().count();
        if leftovers == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(leftovers, 0, "no scratch directory is left behind");
}

#[tokio::test]
async fn a_malformed_handler_fails_init_without_starting_an_interpreter() {
    let h = Harness::new(|_| {});
    let py = h.deploy(
        "badpy",
        Runtime::Python312,
        "app",
        &[("app.py", "def handler(e, c):\n    return 1\n", 0o644)],
        3,
        &[],
    );
    let (ty, body) = failure(&h.invoke(&py, "{}", false).await);
    assert_eq!(ty, "Runtime.MalformedHandlerName");
    assert_eq!(
        body["errorMessage"],
        "Bad handler 'app': not enough values to unpack (expected 2, got 1)"
    );
    let node = h.deploy(
        "badnode",
        Runtime::Nodejs20,
        "../../etc/x.handler",
        &[("index.js", "exports.handler = async () => 1;\n", 0o644)],
        3,
        &[],
    );
    let (ty, body) = failure(&h.invoke(&node, "{}", false).await);
    assert_eq!(ty, "Runtime.MalformedHandlerName");
    assert_eq!(body["errorMessage"], "Bad handler ../../etc/x.handler");
    assert_eq!(h.engine.stats().environments, 0);
    // A handler the runtime resolves itself still runs.
    let ok = h.deploy(
        "dotslash",
        Runtime::Nodejs20,
        "./index.handler",
        &[("index.js", "exports.handler = async () => 7;\n", 0o644)],
        3,
        &[],
    );
    assert_eq!(success(&h.invoke(&ok, "{}", false).await), 7);
}
