//! `serval deploy DIR`: zips a directory and creates the function, or updates its code and
//! configuration when it already exists.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::Spinner;
use crate::client::{
    Client, ClientError, CreateFunctionInput, Environment, FunctionCode, FunctionConfiguration,
    UpdateFunctionConfigurationInput, DEFAULT_ROLE,
};
use crate::pack::pack_dir;
use crate::table::human_bytes;

/// How long `deploy` waits for a function to leave `Pending` / `InProgress`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often it asks meanwhile.
const READY_POLL: Duration = Duration::from_millis(100);

/// Options of `serval deploy`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// Directory whose contents become the function's code (zipped in memory, modes kept).
    pub dir: PathBuf,
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// Runtime, e.g. python3.12, nodejs20.x, provided.al2023.
    #[arg(long)]
    pub runtime: String,
    /// Handler, e.g. app.handler (for provided runtimes, anything your bootstrap reads).
    #[arg(long)]
    pub handler: String,
    /// Memory in MB (server default when omitted on create; unchanged on update).
    #[arg(long, value_name = "MB")]
    pub memory: Option<u32>,
    /// Timeout in seconds (server default when omitted on create; unchanged on update).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u32>,
    /// Environment variable, repeatable; when given on update, replaces all variables.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
    /// Execution role ARN (default on create: arn:aws:iam::000000000000:role/serval).
    #[arg(long, value_name = "ARN")]
    pub role: Option<String>,
}

/// Parses `KEY=VALUE` (the value may contain `=`; the key may not be empty).
pub fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Whether `deploy` created the function or updated an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployAction {
    Created,
    Updated,
}

/// Runs `serval deploy`.
pub async fn run(client: &Client, args: DeployArgs) -> anyhow::Result<()> {
    let spinner = Spinner::start(format!("packing {}", args.dir.display()));
    let dir = args.dir.clone();
    let package = tokio::task::spawn_blocking(move || pack_dir(&dir))
        .await
        .context("join the packing task")?
        .with_context(|| format!("pack {}", args.dir.display()))?;
    let zip_size = package.zip.len() as u64;
    spinner.set(format!(
        "deploying {} ({} files, {})",
        args.name,
        package.files,
        human_bytes(zip_size)
    ));
    let (action, config) = deploy_zip(client, &args, &package.zip, &spinner).await?;
    drop(spinner);
    println!(
        "{} {}: runtime {}, code {}, CodeSha256 {}",
        match action {
            DeployAction::Created => "created",
            DeployAction::Updated => "updated",
        },
        config.function_name,
        config.runtime.as_deref().unwrap_or(&args.runtime),
        human_bytes(config.code_size.unwrap_or(zip_size)),
        config.code_sha256.as_deref().unwrap_or("-"),
    );
    Ok(())
}

/// Creates or updates `args.name` with `zip`, waiting until the function is ready.
pub async fn deploy_zip(
    client: &Client,
    args: &DeployArgs,
    zip: &[u8],
    spinner: &Spinner,
) -> anyhow::Result<(DeployAction, FunctionConfiguration)> {
    let name = args.name.as_str();
    let environment = (!args.env.is_empty()).then(|| Environment {
        variables: args.env.iter().cloned().collect::<BTreeMap<_, _>>(),
    });
    let existing = client
        .get_function(name)
        .await
        .with_context(|| format!("look up function {name}"))?;
    if existing.is_some() {
        spinner.set(format!("updating code of {name}"));
        wait_ready(client, name).await?;
        client
            .update_function_code(name, zip)
            .await
            .with_context(|| format!("update code of function {name}"))?;
        wait_ready(client, name).await?;
        spinner.set(format!("updating configuration of {name}"));
        let update = UpdateFunctionConfigurationInput {
            runtime: Some(args.runtime.clone()),
            handler: Some(args.handler.clone()),
            role: args.role.clone(),
            memory_size: args.memory,
            timeout: args.timeout,
            environment,
        };
        client
            .update_function_configuration(name, &update)
            .await
            .with_context(|| format!("update configuration of function {name}"))?;
        let config = wait_ready(client, name).await?;
        Ok((DeployAction::Updated, config))
    } else {
        spinner.set(format!("creating {name}"));
        let input = CreateFunctionInput {
            function_name: name.to_owned(),
            runtime: args.runtime.clone(),
            role: args.role.clone().unwrap_or_else(|| DEFAULT_ROLE.to_owned()),
            handler: args.handler.clone(),
            code: FunctionCode::from_zip(zip),
            memory_size: args.memory,
            timeout: args.timeout,
            environment,
        };
        client
            .create_function(&input)
            .await
            .with_context(|| format!("create function {name}"))?;
        let config = wait_ready(client, name).await?;
        Ok((DeployAction::Created, config))
    }
}

/// Polls GetFunction until the function is neither `Pending` nor being updated.
pub async fn wait_ready(client: &Client, name: &str) -> anyhow::Result<FunctionConfiguration> {
    let started = Instant::now();
    loop {
        let got = client
            .get_function(name)
            .await
            .with_context(|| format!("look up function {name}"))?
            .with_context(|| format!("function {name} disappeared while deploying"))?;
        let config = got.configuration;
        if let Some(reason) = config.failure() {
            anyhow::bail!("function {name} failed to become ready: {reason}");
        }
        if config.is_ready() {
            return Ok(config);
        }
        if started.elapsed() > READY_TIMEOUT {
            anyhow::bail!(
                "function {name} was not ready after {} s (state {}, last update {})",
                READY_TIMEOUT.as_secs(),
                config.state.as_deref().unwrap_or("-"),
                config.last_update_status.as_deref().unwrap_or("-"),
            );
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Whether an error is the server saying "not now, the function is still changing".
pub fn is_not_ready(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some("ResourceConflictException" | "ResourceNotReadyException")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_pairs() {
        assert_eq!(
            parse_env_pair("A=b=c").unwrap(),
            ("A".to_owned(), "b=c".to_owned())
        );
        assert_eq!(
            parse_env_pair("A=").unwrap(),
            ("A".to_owned(), String::new())
        );
        assert!(parse_env_pair("=x").is_err());
        assert!(parse_env_pair("novalue").is_err());
    }
}
