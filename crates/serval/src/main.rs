//! The `serval` binary: `serval server` and the user commands (`deploy`, `invoke`, `functions`,
//! `logs`, `bench`).
//!
//! The user commands are clients of the server's public AWS API (Lambda REST `2015-03-31`,
//! CloudWatch Logs), exactly like the AWS CLI or boto3; they share nothing with the server but
//! the wire. The server is found from `--endpoint`, else `SERVAL_ENDPOINT`, else
//! `http://127.0.0.1:9000`.
//!
//! Exit status: 0 on success; 1 when the server answered with an error or a function failed;
//! 2 for usage errors and when the server could not be reached.
//!
//! Not for: logic of its own beyond argument parsing and wiring.

mod bench;
mod client;
mod cmd;
mod hello_runtime;
mod pack;
mod server;
mod sigv4;
mod table;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use client::{Client, ClientError, Endpoint, DEFAULT_ENDPOINT};
use cmd::UsageError;

/// A self-hosted, AWS-Lambda-compatible serverless platform.
#[derive(Debug, Parser)]
#[command(name = "serval", version, about, propagate_version = true)]
struct Cli {
    /// Serval server to talk to [default: $SERVAL_ENDPOINT, else http://127.0.0.1:9000].
    #[arg(long, global = true, env = "SERVAL_ENDPOINT", value_name = "URL")]
    endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: every AWS surface on one address.
    Server(server::ServerArgs),
    /// Zip a directory and create the function, or update its code and configuration.
    Deploy(cmd::deploy::DeployArgs),
    /// Invoke a function synchronously and print its response.
    Invoke(cmd::invoke::InvokeArgs),
    /// List functions.
    Functions(cmd::functions::FunctionsArgs),
    /// Print a function's logs.
    Logs(cmd::logs::LogsArgs),
    /// Measure cold start, warm latency and throughput (starts a private server unless
    /// --endpoint or SERVAL_ENDPOINT is set).
    Bench(bench::BenchArgs),
    /// A minimal Runtime API client answering {"ok":true} (the benchmark's native function).
    #[command(name = "__hello-runtime", hide = true)]
    HelloRuntime,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::HelloRuntime) {
        // No tokio, no logging: the runtime's start-up is part of every cold start it measures.
        return hello_runtime::main();
    }
    let default_level = match cli.command {
        Command::Server(_) => "info",
        _ => "warn",
    };
    init_tracing(default_level);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(dispatch(cli));
    // Do not wait for blocking work (a stdin read) that nothing needs any more.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code_for(&e)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: `default_level`).
fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// 2 for usage and connection errors, 1 for everything else.
fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    let usage_or_connection = e.chain().any(|cause| {
        cause.downcast_ref::<UsageError>().is_some()
            || cause.downcast_ref::<client::EndpointError>().is_some()
            || cause
                .downcast_ref::<ClientError>()
                .is_some_and(ClientError::is_connection)
    });
    ExitCode::from(if usage_or_connection { 2 } else { 1 })
}

/// The endpoint from `--endpoint` / `SERVAL_ENDPOINT`, if either was given.
fn given_endpoint(endpoint: Option<&str>) -> anyhow::Result<Option<Endpoint>> {
    endpoint
        .map(|e| Endpoint::parse(e).context("read --endpoint"))
        .transpose()
}

fn client_for(endpoint: Option<&str>) -> anyhow::Result<Client> {
    let endpoint = match given_endpoint(endpoint)? {
        Some(endpoint) => endpoint,
        None => Endpoint::parse(DEFAULT_ENDPOINT).expect("the default endpoint is valid"),
    };
    Ok(Client::new(endpoint))
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let endpoint = cli.endpoint.as_deref();
    match cli.command {
        Command::Server(args) => server::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Deploy(args) => cmd::deploy::run(&client_for(endpoint)?, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Invoke(args) => cmd::invoke::run(&client_for(endpoint)?, args).await,
        Command::Functions(args) => cmd::functions::run(&client_for(endpoint)?, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Logs(args) => cmd::logs::run(&client_for(endpoint)?, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(given_endpoint(endpoint)?, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::HelloRuntime => Ok(hello_runtime::main()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("serval").chain(args.iter().copied()))
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_deploy_with_all_options() {
        let cli = parse(&[
            "deploy",
            "./fn",
            "--name",
            "hello",
            "--runtime",
            "python3.12",
            "--handler",
            "app.handler",
            "--memory",
            "256",
            "--timeout",
            "10",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--role",
            "arn:aws:iam::1:role/r",
            "--endpoint",
            "http://127.0.0.1:9100",
        ])
        .unwrap();
        assert_eq!(cli.endpoint.as_deref(), Some("http://127.0.0.1:9100"));
        let Command::Deploy(d) = cli.command else {
            panic!("not deploy")
        };
        assert_eq!(d.dir, std::path::PathBuf::from("./fn"));
        assert_eq!(d.name, "hello");
        assert_eq!(d.memory, Some(256));
        assert_eq!(d.timeout, Some(10));
        assert_eq!(
            d.env,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(d.role.as_deref(), Some("arn:aws:iam::1:role/r"));
    }

    #[test]
    fn deploy_requires_name_runtime_handler() {
        let err = parse(&["deploy", "./fn", "--name", "x"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(parse(&[
            "deploy",
            "./fn",
            "--name",
            "x",
            "--runtime",
            "r",
            "--handler",
            "h",
            "--env",
            "NOEQUALS"
        ])
        .is_err());
    }

    #[test]
    fn parses_invoke_logs_functions() {
        let Command::Invoke(i) = parse(&["invoke", "f", "--payload", "@e.json", "--log"])
            .unwrap()
            .command
        else {
            panic!("not invoke")
        };
        assert_eq!(i.payload.as_deref(), Some("@e.json"));
        assert!(i.log);

        let Command::Logs(l) = parse(&["logs", "f", "--follow", "--since", "1h"])
            .unwrap()
            .command
        else {
            panic!("not logs")
        };
        assert!(l.follow);
        assert_eq!(l.since, Some(Duration::from_secs(3600)));
        let Command::Logs(l) = parse(&["logs", "f"]).unwrap().command else {
            panic!("not logs")
        };
        assert_eq!(l.since, None, "everything retained by default");
        assert!(parse(&["logs", "f", "--since", "soon"]).is_err());

        assert!(matches!(
            parse(&["--endpoint", "http://h:1", "functions"])
                .unwrap()
                .command,
            Command::Functions(_)
        ));
    }

    #[test]
    fn parses_bench_options() {
        let Command::Bench(b) = parse(&["bench"]).unwrap().command else {
            panic!("not bench")
        };
        assert_eq!(b.concurrency, [1, 8, 64]);
        assert_eq!(b.samples, 20);
        assert_eq!(b.duration, Duration::from_secs(5));
        assert!(!b.json);
        let Command::Bench(b) = parse(&[
            "bench",
            "--concurrency",
            "2,4",
            "--duration",
            "1s",
            "--samples",
            "3",
            "--json",
            "--functions",
            "native",
        ])
        .unwrap()
        .command
        else {
            panic!("not bench")
        };
        assert_eq!(b.concurrency, [2, 4]);
        assert_eq!(b.functions, [bench::BenchFunction::Native]);
        assert!(b.json);
        assert!(parse(&["bench", "--concurrency", "0"]).is_err());
        assert!(parse(&["bench", "--samples", "0"]).is_err());
        let Command::Bench(b) = parse(&[
            "bench",
            "--cold",
            "--functions",
            "python,node",
            "--cold-functions",
            "50",
        ])
        .unwrap()
        .command
        else {
            panic!("not bench")
        };
        assert!(b.cold);
        assert_eq!(
            b.functions,
            [bench::BenchFunction::Python, bench::BenchFunction::Node]
        );
        assert_eq!((b.cold_functions, b.cold_parallel), (50, 100));
        // One measurement mode at a time.
        assert!(parse(&["bench", "--cold", "--http"]).is_err());
        assert!(parse(&["bench", "--cold", "--cold-parallel", "0"]).is_err());
    }

    #[test]
    fn hello_runtime_is_hidden_but_parses() {
        assert!(matches!(
            parse(&["__hello-runtime"]).unwrap().command,
            Command::HelloRuntime
        ));
        use clap::CommandFactory;
        let help = Cli::command().render_help().to_string();
        assert!(!help.contains("__hello-runtime"), "{help}");
    }

    #[test]
    fn usage_and_connection_errors_exit_2() {
        let usage = anyhow::Error::new(UsageError("bad".into())).context("invoke");
        assert_eq!(exit_code_for(&usage), ExitCode::from(2));
        let api = anyhow::Error::new(ClientError::Api(client::ApiError {
            status: http::StatusCode::NOT_FOUND,
            code: "ResourceNotFoundException".into(),
            message: "nope".into(),
        }));
        assert_eq!(exit_code_for(&api), ExitCode::from(1));
        let bad_endpoint = given_endpoint(Some("https://x")).unwrap_err();
        assert_eq!(exit_code_for(&bad_endpoint), ExitCode::from(2));
    }
}
