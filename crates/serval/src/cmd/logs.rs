//! `serval logs NAME`: a function's log lines from `/aws/lambda/NAME` (CloudWatch Logs
//! FilterLogEvents), optionally followed.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use time::OffsetDateTime;

use crate::client::{Client, FilterLogEventsInput, FilteredLogEvent};

/// How often `--follow` asks for new events.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);
/// Most pages read per poll (each up to `PAGE_LIMIT` events).
const MAX_PAGES_PER_POLL: usize = 1_000;
/// Events asked for per page.
const PAGE_LIMIT: u32 = 1_000;

/// Options of `serval logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Function name.
    pub name: String,
    /// Keep polling for new events until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// How far back to start: e.g. 30s, 10m, 2h, 1d, 1h30m [default: everything retained].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
}

/// Parses a duration such as `90s`, `10m`, `2h`, `1d`, `500ms` or `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: expected e.g. 30s, 10m, 2h, 1d, 1h30m");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let part = u32::try_from(n)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

/// `2025-01-02T03:04:05.678Z` for a millisecond timestamp.
pub fn format_timestamp(ms: i64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// One output line: `timestamp requestId message`, or `timestamp message` for a line of no
/// invocation (the message's trailing newline dropped; the `\r` Lambda runtimes use to keep a
/// multi-line message in one event shown as a line break).
pub fn format_event(e: &FilteredLogEvent) -> String {
    let timestamp = format_timestamp(e.timestamp);
    let message = e.message.trim_end_matches(['\n', '\r']).replace('\r', "\n");
    match &e.request_id {
        Some(request_id) => format!("{timestamp} {request_id} {message}"),
        None => format!("{timestamp} {message}"),
    }
}

/// What identifies an event for de-duplication across polls.
fn event_key(e: &FilteredLogEvent) -> String {
    match &e.event_id {
        Some(id) => id.clone(),
        None => format!(
            "{}\0{}\0{}",
            e.timestamp,
            e.log_stream_name.as_deref().unwrap_or(""),
            e.message
        ),
    }
}

/// Every event of `group` from `start_ms` on, all pages, in timestamp order. A group that does
/// not exist yet has no events.
async fn fetch(
    client: &Client,
    group: &str,
    start_ms: i64,
) -> anyhow::Result<Vec<FilteredLogEvent>> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES_PER_POLL {
        let input = FilterLogEventsInput {
            log_group_name: group.to_owned(),
            start_time: Some(start_ms),
            next_token: token.clone(),
            limit: Some(PAGE_LIMIT),
            ..Default::default()
        };
        let page = match client.filter_log_events(&input).await {
            Ok(page) => page,
            Err(e) if e.code() == Some("ResourceNotFoundException") => break,
            Err(e) => return Err(e).with_context(|| format!("read log group {group}")),
        };
        events.extend(page.events);
        match page.next_token.filter(|t| !t.is_empty()) {
            Some(next) if Some(&next) != token.as_ref() => token = Some(next),
            _ => break,
        }
    }
    events.sort_by_key(|e| e.timestamp);
    Ok(events)
}

/// Runs `serval logs`.
pub async fn run(client: &Client, args: LogsArgs) -> anyhow::Result<()> {
    let group = format!("/aws/lambda/{}", args.name);
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let mut start_ms = match args.since {
        Some(since) => now_ms.saturating_sub(since.as_millis().min(i64::MAX as u128) as i64),
        None => 0,
    };
    // Ids of events printed at or after `start_ms`, the only ones a later poll can return again.
    let mut seen: HashMap<String, i64> = HashMap::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let events = tokio::select! {
            events = fetch(client, &group, start_ms) => events?,
            _ = &mut ctrl_c => return Ok(()),
        };
        let mut out = std::io::stdout().lock();
        for e in events {
            let key = event_key(&e);
            if seen.contains_key(&key) {
                continue;
            }
            if let Err(err) = writeln!(out, "{}", format_event(&e)) {
                if err.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(err).context("write log lines to stdout");
            }
            start_ms = start_ms.max(e.timestamp);
            seen.insert(key, e.timestamp);
        }
        if let Err(err) = out.flush() {
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(err).context("write log lines to stdout");
        }
        drop(out);
        seen.retain(|_, ts| *ts >= start_ms);
        if !args.follow {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            _ = &mut ctrl_c => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        for bad in ["", "10", "m", "10x", "-5m", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_events() {
        let e = FilteredLogEvent {
            timestamp: 1_735_787_045_678,
            message: "START RequestId: abc Version: $LATEST\n".into(),
            ..Default::default()
        };
        assert_eq!(
            format_event(&e),
            "2025-01-02T03:04:05.678Z START RequestId: abc Version: $LATEST"
        );
    }

    #[test]
    fn formats_events_with_their_request_id() {
        let e = FilteredLogEvent {
            timestamp: 1_735_787_045_678,
            message: "first\rsecond\n".into(),
            request_id: Some("c0ffee00-1234-4567-89ab-0123456789ab".into()),
            ..Default::default()
        };
        assert_eq!(
            format_event(&e),
            "2025-01-02T03:04:05.678Z c0ffee00-1234-4567-89ab-0123456789ab first\nsecond"
        );
    }

    #[test]
    fn dedupes_by_event_id_or_content() {
        let a = FilteredLogEvent {
            event_id: Some("1".into()),
            ..Default::default()
        };
        let b = FilteredLogEvent {
            timestamp: 5,
            message: "m".into(),
            ..Default::default()
        };
        assert_eq!(event_key(&a), "1");
        assert_eq!(event_key(&b), event_key(&b.clone()));
        assert_ne!(event_key(&a), event_key(&b));
    }
}
