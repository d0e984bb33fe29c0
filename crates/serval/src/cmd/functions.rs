//! `serval functions`: every function, as an aligned table (ListFunctions, all pages).

use anyhow::Context as _;

use crate::client::{Client, FunctionConfiguration};
use crate::table::{human_bytes, Align, Table};

/// Most pages `functions` follows before giving up (a server that never stops paging).
const MAX_PAGES: usize = 10_000;

/// Options of `serval functions`.
#[derive(Debug, Clone, clap::Args)]
pub struct FunctionsArgs {}

/// Runs `serval functions`.
pub async fn run(client: &Client, _args: FunctionsArgs) -> anyhow::Result<()> {
    let functions = list_all(client).await?;
    print!("{}", render(&functions));
    Ok(())
}

/// Lists every function, following `NextMarker`.
pub async fn list_all(client: &Client) -> anyhow::Result<Vec<FunctionConfiguration>> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .list_functions(marker.as_deref(), Some(50))
            .await
            .context("list functions")?;
        all.extend(page.functions);
        match page.next_marker.filter(|m| !m.is_empty()) {
            Some(next) if Some(&next) != marker.as_ref() => marker = Some(next),
            _ => return Ok(all),
        }
    }
    anyhow::bail!("list functions: the server kept paging past {MAX_PAGES} pages")
}

/// The table `serval functions` prints.
pub fn render(functions: &[FunctionConfiguration]) -> String {
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("RUNTIME", Align::Left),
        ("MEMORY", Align::Right),
        ("TIMEOUT", Align::Right),
        ("CODE SIZE", Align::Right),
        ("LAST MODIFIED", Align::Left),
    ]);
    for f in functions {
        table.row(vec![
            f.function_name.clone(),
            f.runtime.clone().unwrap_or_else(|| "-".into()),
            f.memory_size
                .map_or_else(|| "-".into(), |m| format!("{m} MB")),
            f.timeout.map_or_else(|| "-".into(), |t| format!("{t} s")),
            f.code_size.map_or_else(|| "-".into(), human_bytes),
            f.last_modified.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_function_table() {
        let f = |name: &str, runtime: &str, mem, size| FunctionConfiguration {
            function_name: name.into(),
            runtime: Some(runtime.into()),
            memory_size: Some(mem),
            timeout: Some(3),
            code_size: Some(size),
            last_modified: Some("2025-01-02T03:04:05.000+0000".into()),
            ..Default::default()
        };
        let out = render(&[
            f("hello", "python3.12", 128, 300),
            f("native-fn", "provided.al2023", 1024, 2048),
        ]);
        assert_eq!(
            out,
            "NAME       RUNTIME           MEMORY  TIMEOUT  CODE SIZE  LAST MODIFIED\n\
             hello      python3.12        128 MB      3 s      300 B  2025-01-02T03:04:05.000+0000\n\
             native-fn  provided.al2023  1024 MB      3 s    2.0 KiB  2025-01-02T03:04:05.000+0000\n"
        );
    }

    #[test]
    fn renders_header_only_when_empty() {
        assert_eq!(
            render(&[]),
            "NAME  RUNTIME  MEMORY  TIMEOUT  CODE SIZE  LAST MODIFIED\n"
        );
    }
}
