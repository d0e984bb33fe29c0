//! Engine tests against real runtimes: a real store, the process sandbox, Serval's own
//! bootstraps, real `python3`/`node`/`sh` processes. No HTTP control plane involved.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serval_engine::{
    Engine, EngineConfig, InvokeOutcome, InvokeRequest, InvokeResult, ProvisionedState,
};
use serval_model::{
    AliasConfig, Architecture, EnvironmentVars, FunctionConfig, FunctionName, FunctionState,
    Handler, LastUpdateStatus, PackageType, Qualifier, Runtime, VersionId,
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
        let config = self.config(name, runtime, handler, files, timeout_secs, env);
        let name = config.name.clone();
        self.engine.deploy(config);
        name
    }

    /// The `$LATEST` configuration `deploy` would register, with its code stored.
    fn config(
        &self,
        name: &str,
        runtime: Runtime,
        handler: &str,
        files: &[(&str, &str, u32)],
        timeout_secs: u32,
        env: &[(&str, &str)],
    ) -> FunctionConfig {
        let code = self.store.put_code(&zip_of(files)).unwrap();
        let name = FunctionName::parse(name).unwrap();
        let vars: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        FunctionConfig {
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
        }
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

fn request(f: &FunctionName, qualifier: Option<Qualifier>, tail: bool) -> InvokeRequest {
    InvokeRequest {
        qualifier,
        request_id: None,
        function: f.clone(),
        payload: Bytes::from_static(b"{}"),
        client_context: None,
        log_tail: tail,
    }
}

/// Deploys `$LATEST` returning `which`, and publishes it as version `version`.
fn publish(h: &Harness, name: &str, which: &str, version: u64) -> FunctionName {
    let code = format!(
        "import os\ndef handler(e, c):\n    return {{'code': '{which}', 'version': os.environ['AWS_LAMBDA_FUNCTION_VERSION'], 'init': os.environ['AWS_LAMBDA_INITIALIZATION_TYPE'], 'arn': c.invoked_function_arn}}\n"
    );
    let mut cfg = h.config(
        name,
        Runtime::Python312,
        "app.handler",
        &[("app.py", &code, 0o644)],
        5,
        &[],
    );
    let f = cfg.name.clone();
    h.engine.deploy(cfg.clone());
    cfg.version = version.to_string();
    h.engine.deploy_version(cfg);
    f
}

#[tokio::test]
async fn published_versions_keep_their_code_and_report_the_version_that_ran() {
    let h = Harness::new(|_| {});
    let f = publish(&h, "versioned", "one", 1);
    publish(&h, "versioned", "two", 2);
    h.deploy(
        "versioned",
        Runtime::Python312,
        "app.handler",
        &[(
            "app.py",
            "def handler(e, c):\n    return {'code': 'latest'}\n",
            0o644,
        )],
        5,
        &[],
    );
    let one = h
        .engine
        .invoke(request(&f, Some(Qualifier::Version(1)), false))
        .await
        .unwrap();
    assert_eq!(success(&one)["code"], "one");
    assert_eq!(success(&one)["version"], "1");
    assert_eq!(
        success(&one)["arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:versioned:1"
    );
    assert_eq!(one.executed_version, "1");
    let latest = h.engine.invoke(request(&f, None, false)).await.unwrap();
    assert_eq!(success(&latest)["code"], "latest");
    assert_eq!(latest.executed_version, "$LATEST");
    let missing = h
        .engine
        .invoke(request(&f, Some(Qualifier::Version(3)), false))
        .await;
    assert!(matches!(
        missing,
        Err(serval_engine::InvokeError::FunctionNotFound {
            qualifier: Some(Qualifier::Version(3)),
            ..
        })
    ));
    h.engine.remove_version(&f, 1);
    assert!(h
        .engine
        .invoke(request(&f, Some(Qualifier::Version(1)), false))
        .await
        .is_err());
    assert!(h
        .engine
        .invoke(request(&f, Some(Qualifier::Version(2)), false))
        .await
        .is_ok());
}

#[tokio::test]
async fn an_alias_splits_invocations_between_two_versions_by_weight() {
    let h = Harness::new(|_| {});
    let f = publish(&h, "weighted", "one", 1);
    publish(&h, "weighted", "two", 2);
    let mut alias = AliasConfig {
        function: f.clone(),
        name: "live".into(),
        function_version: VersionId::Published(1),
        description: String::new(),
        additional_version_weights: BTreeMap::from([(2, 0.25)]),
        revision_id: "r".into(),
    };
    h.engine.set_alias(&alias);
    let live = Some(Qualifier::Alias("live".into()));
    let mut twos = 0;
    const N: usize = 400;
    for _ in 0..N {
        let out = h
            .engine
            .invoke(request(&f, live.clone(), false))
            .await
            .unwrap();
        let v = success(&out);
        assert_eq!(v["version"], out.executed_version.as_str());
        twos += usize::from(out.executed_version == "2");
    }
    // Binomial(400, 0.25): mean 100, standard deviation about 8.7; allow 4 of them.
    assert!((65..=135).contains(&twos), "{twos} of {N} ran version 2");
    alias.additional_version_weights.clear();
    alias.function_version = VersionId::Published(2);
    h.engine.set_alias(&alias);
    let out = h
        .engine
        .invoke(request(&f, live.clone(), false))
        .await
        .unwrap();
    assert_eq!(out.executed_version, "2");
    h.engine.remove_alias(&f, "live");
    assert!(matches!(
        h.engine.invoke(request(&f, live, false)).await,
        Err(serval_engine::InvokeError::FunctionNotFound { .. })
    ));
}

#[tokio::test]
async fn reserved_concurrency_throttles_with_its_own_reason() {
    let h = Harness::new(|c| c.max_concurrency = 1000);
    let code = "import time\ndef handler(e, c):\n    time.sleep(0.5)\n    return 1\n";
    let f = h.deploy(
        "reserved",
        Runtime::Python312,
        "app.handler",
        &[("app.py", code, 0o644)],
        5,
        &[],
    );
    h.engine.set_reserved_concurrency(&f, Some(0));
    assert_eq!(h.engine.concurrency().unreserved, 1000);
    match h.engine.invoke(request(&f, None, false)).await {
        Err(serval_engine::InvokeError::TooManyRequests { reason, .. }) => {
            assert_eq!(reason, "ReservedFunctionConcurrentInvocationLimitExceeded")
        }
        other => panic!("expected a throttle, got {other:?}"),
    }
    h.engine.set_reserved_concurrency(&f, Some(1));
    let c = h.engine.concurrency();
    assert_eq!(
        (c.account_limit, c.unreserved, c.unreserved_minimum),
        (1000, 999, 100)
    );
    let (a, b) = tokio::join!(h.engine.invoke(request(&f, None, false)), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        h.engine.invoke(request(&f, None, false)).await
    });
    assert!(a.is_ok());
    assert!(matches!(
        b,
        Err(serval_engine::InvokeError::TooManyRequests {
            reason: "ReservedFunctionConcurrentInvocationLimitExceeded",
            ..
        })
    ));
    h.engine.set_reserved_concurrency(&f, None);
    assert_eq!(h.engine.concurrency().unreserved, 1000);
    let (a, b) = tokio::join!(
        h.engine.invoke(request(&f, None, false)),
        h.engine.invoke(request(&f, None, false))
    );
    assert!(a.is_ok() && b.is_ok());
}

#[tokio::test]
async fn reservations_shrink_the_pool_other_functions_share() {
    let h = Harness::new(|c| c.max_concurrency = 2);
    let code = "import time\ndef handler(e, c):\n    time.sleep(0.5)\n    return 1\n";
    let files = [("app.py", code, 0o644)];
    let reserved = h.deploy("holder", Runtime::Python312, "app.handler", &files, 5, &[]);
    let other = h.deploy("other", Runtime::Python312, "app.handler", &files, 5, &[]);
    h.engine.set_reserved_concurrency(&reserved, Some(1));
    let (a, b) = tokio::join!(h.engine.invoke(request(&other, None, false)), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        h.engine.invoke(request(&other, None, false)).await
    });
    assert!(a.is_ok());
    assert!(matches!(
        b,
        Err(serval_engine::InvokeError::TooManyRequests {
            reason: "ConcurrentInvocationLimitExceeded",
            ..
        })
    ));
    // The reservation is still there for its own function.
    assert!(h
        .engine
        .invoke(request(&reserved, None, false))
        .await
        .is_ok());
}

#[tokio::test]
async fn provisioned_environments_are_ready_before_any_invocation() {
    let h = Harness::new(|_| {});
    let f = publish(&h, "provisioned", "one", 1);
    let alias = AliasConfig {
        function: f.clone(),
        name: "prod".into(),
        function_version: VersionId::Published(1),
        description: String::new(),
        additional_version_weights: BTreeMap::new(),
        revision_id: "r".into(),
    };
    h.engine.set_alias(&alias);
    h.engine.set_provisioned_concurrency(&f, "prod", 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = h.engine.provisioned_status(&f, "prod").unwrap();
        if status.state == ProvisionedState::Ready {
            assert_eq!((status.requested, status.allocated), (2, 2));
            break;
        }
        assert_eq!(status.state, ProvisionedState::InProgress, "{status:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "not ready: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let prod = Some(Qualifier::Alias("prod".into()));
    let (a, b) = tokio::join!(
        h.engine.invoke(request(&f, prod.clone(), true)),
        h.engine.invoke(request(&f, prod.clone(), true))
    );
    for out in [a.unwrap(), b.unwrap()] {
        assert_eq!(success(&out)["init"], "provisioned-concurrency");
        assert!(!tail(&out).contains("Init Duration"), "{}", tail(&out));
    }
    assert!(h.engine.provisioned_status(&f, "1").is_none());
    h.engine.remove_provisioned_concurrency(&f, "prod");
    assert!(h.engine.provisioned_status(&f, "prod").is_none());
}
