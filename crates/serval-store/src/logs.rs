//! Function logs in CloudWatch Logs' model: log groups (`/aws/lambda/<name>`), log streams
//! (one per execution environment, `2026/11/24/[$LATEST]<32-hex>`) and events, with the
//! queries the CloudWatch Logs API needs (GetLogEvents, FilterLogEvents, DescribeLogGroups,
//! DescribeLogStreams, DeleteLogGroup) and retention.
//!
//! Retention: `set_log_group_retention` records a group's `retentionInDays`
//! (PutRetentionPolicy); `apply_log_retention(now_ms, default_days)` enforces every group's
//! policy, falling back to a server-wide default for groups without one, and is meant to be
//! called periodically by the engine (blocking; from `spawn_blocking` or the log writer's
//! thread). It deletes whole chunks (a chunk goes once its newest event has expired), keep stream and
//! group `storedBytes` consistent and keep empty streams, as CloudWatch does.
//!
//! Storage: an appended batch becomes one `log_chunks` row per stream holding the events
//! encoded back to back (`i64` timestamp, `u8` request id length (0: none), the request id,
//! `u32` message length, UTF-8 message; little-endian), so appending 500 lines costs one row
//! and one transaction; queries decode chunks and filter the events. An event's position is `(chunk id, index in chunk)`: events of a stream keep append
//! order, and positions are what tokens and event ids are made of.
//!
//! Request ids: each event may carry the id of the invocation that produced it (a Serval
//! extension; CloudWatch's text events have none). FilterLogEvents treats it as searchable: a
//! pattern term equal to an event's request id matches that event, so filtering by a request
//! id finds the function's own lines of that invocation, not only `START`/`END`/`REPORT`.
//!
//! Not for: capturing a function's output, truncating long lines or rate-limiting a noisy
//! function (the engine's log writer does that), metric filters or Logs Insights.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rusqlite::{params, OptionalExtension};

use crate::{now_ms, Store, StoreError};

/// Most events one GetLogEvents or FilterLogEvents page returns (AWS's limit).
pub const LOG_EVENTS_MAX_LIMIT: usize = 10_000;
/// Most bytes of events one page returns (AWS: 1 MB, counting 26 bytes per event).
const PAGE_MAX_BYTES: usize = 1_048_576;
/// Per-event overhead CloudWatch counts towards sizes.
const EVENT_OVERHEAD_BYTES: usize = 26;
/// Most events in one chunk row; bigger batches are split.
const CHUNK_MAX_EVENTS: usize = 1_000;
/// Most message bytes in one chunk row; bigger batches are split.
const CHUNK_MAX_BYTES: usize = 1024 * 1024;
/// Bits of an event position holding the index within its chunk.
const POS_INDEX_BITS: u32 = 20;
/// Most chunks one FilterLogEvents call scans before returning a (possibly empty) page with a
/// `nextToken`, as AWS does, so one call's cost stays bounded.
const FILTER_SCAN_MAX_CHUNKS: usize = 5_000;
/// Most DescribeLogGroups / DescribeLogStreams items per page (AWS's limit).
const DESCRIBE_MAX_LIMIT: usize = 50;
/// Cached stream ids kept beside the writer before the cache is dropped and refilled.
const STREAM_ID_CACHE_MAX: usize = 10_000;
/// Longest request id an event may carry (Serval's are 36-byte UUIDs).
pub const REQUEST_ID_MAX_BYTES: usize = 64;
/// Bytes of an encoded event besides its request id and message: timestamp, lengths.
const EVENT_HEADER_BYTES: usize = 8 + 1 + 4;

/// One stream's events in a multi-stream append.
#[derive(Debug, Clone, Copy)]
pub struct StreamEvents<'a> {
    pub group: &'a str,
    pub stream: &'a str,
    pub events: &'a [LogEvent],
}

/// One log line as the engine appends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// When the line was produced, in ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// The line, without its trailing newline.
    pub message: String,
    /// The invocation that produced the line, if any (1..=64 bytes); shared, because every
    /// line of one invocation carries the same id.
    pub request_id: Option<Arc<str>>,
}

/// An event as GetLogEvents returns it (`OutputLogEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLogEvent {
    pub timestamp_ms: i64,
    pub message: String,
    /// When the store received the event's batch, in ms since the Unix epoch.
    pub ingestion_time_ms: i64,
    /// The invocation that produced the line, if any.
    pub request_id: Option<String>,
}

/// GetLogEvents' parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetLogEventsQuery {
    /// `logGroupName`.
    pub group: String,
    /// `logStreamName`.
    pub stream: String,
    /// `startTime`: events at or after this ms timestamp.
    pub start_time_ms: Option<i64>,
    /// `endTime`: events before this ms timestamp.
    pub end_time_ms: Option<i64>,
    /// `nextToken`: a `nextForwardToken` (`f/...`) or `nextBackwardToken` (`b/...`).
    pub next_token: Option<String>,
    /// `limit`, 1..=10,000; default (and clamp) 10,000.
    pub limit: Option<usize>,
    /// `startFromHead`: without a token, return the oldest events rather than the newest.
    pub start_from_head: bool,
}

/// GetLogEvents' result. As on AWS, when no further events exist in a direction, the token
/// for that direction is the one the caller sent, which is how clients stop paging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEventsPage {
    /// Events in append order (oldest first).
    pub events: Vec<OutputLogEvent>,
    /// `nextForwardToken`: continues after the last event (also for tailing new events).
    pub next_forward_token: String,
    /// `nextBackwardToken`: continues before the first event.
    pub next_backward_token: String,
}

/// FilterLogEvents' parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterLogEventsQuery {
    /// `logGroupName`.
    pub group: String,
    /// `logStreamNames`: only these streams (unknown names match nothing).
    pub stream_names: Option<Vec<String>>,
    /// `logStreamNamePrefix`: only streams whose name starts with this; not with
    /// `stream_names` (AWS rejects both).
    pub stream_name_prefix: Option<String>,
    /// `startTime`: events at or after this ms timestamp.
    pub start_time_ms: Option<i64>,
    /// `endTime`: events before this ms timestamp.
    pub end_time_ms: Option<i64>,
    /// `filterPattern`: whitespace-separated terms that must all appear (case-sensitive);
    /// `"quoted phrases"`; `?term` of which at least one must appear; `-term` that must not.
    /// A term also "appears" in an event whose request id equals it. JSON (`{ ... }`) and
    /// space-delimited (`[ ... ]`) patterns are not supported.
    pub filter_pattern: Option<String>,
    /// `nextToken` from a previous page of the same query.
    pub next_token: Option<String>,
    /// `limit`, 1..=10,000; default (and clamp) 10,000.
    pub limit: Option<usize>,
}

/// An event as FilterLogEvents returns it (`FilteredLogEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredLogEvent {
    pub log_stream_name: String,
    pub timestamp_ms: i64,
    pub message: String,
    pub ingestion_time_ms: i64,
    /// Unique within the log group; stable across calls (clients de-duplicate on it).
    pub event_id: String,
    /// The invocation that produced the line, if any.
    pub request_id: Option<String>,
}

/// FilterLogEvents' result: events of all matching streams in the order they were appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredEventsPage {
    pub events: Vec<FilteredLogEvent>,
    /// Present when the search did not finish; a page may be empty and still carry a token.
    pub next_token: Option<String>,
}

/// A log group as DescribeLogGroups returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroupInfo {
    pub name: String,
    /// `creationTime`, ms since the Unix epoch.
    pub creation_time_ms: i64,
    /// `retentionInDays`; `None` means events never expire.
    pub retention_in_days: Option<u32>,
    /// `storedBytes`: message bytes currently stored.
    pub stored_bytes: u64,
}

impl LogGroupInfo {
    /// `arn:aws:logs:<region>:000000000000:log-group:<name>:*`, as DescribeLogGroups reports.
    pub fn arn(&self, region: &str) -> String {
        format!(
            "arn:aws:logs:{region}:{}:log-group:{}:*",
            serval_model::ACCOUNT_ID,
            self.name
        )
    }
}

/// A log stream as DescribeLogStreams returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStreamInfo {
    pub name: String,
    /// `creationTime`, ms since the Unix epoch.
    pub creation_time_ms: i64,
    /// `firstEventTimestamp`.
    pub first_event_timestamp_ms: Option<i64>,
    /// `lastEventTimestamp`.
    pub last_event_timestamp_ms: Option<i64>,
    /// `lastIngestionTime`.
    pub last_ingestion_time_ms: Option<i64>,
    /// `storedBytes`.
    pub stored_bytes: u64,
}

impl LogStreamInfo {
    /// `arn:aws:logs:<region>:000000000000:log-group:<group>:log-stream:<name>`.
    pub fn arn(&self, region: &str, group: &str) -> String {
        format!(
            "arn:aws:logs:{region}:{}:log-group:{group}:log-stream:{}",
            serval_model::ACCOUNT_ID,
            self.name
        )
    }
}

/// DescribeLogStreams' `orderBy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogStreamOrder {
    /// By name (the default).
    #[default]
    LogStreamName,
    /// By `lastEventTimestamp`; streams without events sort first. Cannot be combined with a
    /// prefix (AWS rejects it too).
    LastEventTime,
}

/// DescribeLogStreams' parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DescribeLogStreamsQuery {
    /// `logGroupName`.
    pub group: String,
    /// `logStreamNamePrefix`.
    pub prefix: Option<String>,
    /// `orderBy`.
    pub order_by: LogStreamOrder,
    /// `descending`.
    pub descending: bool,
    /// `nextToken` from a previous page of the same query.
    pub next_token: Option<String>,
    /// `limit`, clamped to 1..=50 (0 means 50).
    pub limit: usize,
}

/// Where an event sits: `chunk id << 20 | index in chunk`. Orders events by append order.
type Pos = i64;

fn pos(chunk_id: i64, index: usize) -> Pos {
    (chunk_id << POS_INDEX_BITS) | index as i64
}

/// Encodes events into a chunk's blob. Request ids must already be checked
/// ([`check_request_ids`]).
fn encode_events(events: &[LogEvent]) -> Vec<u8> {
    let size: usize = events
        .iter()
        .map(|e| {
            EVENT_HEADER_BYTES + e.request_id.as_ref().map_or(0, |r| r.len()) + e.message.len()
        })
        .sum();
    let mut out = Vec::with_capacity(size);
    for e in events {
        out.extend_from_slice(&e.timestamp_ms.to_le_bytes());
        let id = e.request_id.as_deref().unwrap_or("");
        out.push(u8::try_from(id.len()).expect("request ids are checked before encoding"));
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&(e.message.len() as u32).to_le_bytes());
        out.extend_from_slice(e.message.as_bytes());
    }
    out
}

/// Refuses events whose request id is empty or longer than [`REQUEST_ID_MAX_BYTES`].
fn check_request_ids(events: &[LogEvent]) -> Result<(), StoreError> {
    match events
        .iter()
        .filter_map(|e| e.request_id.as_deref())
        .find(|id| id.is_empty() || id.len() > REQUEST_ID_MAX_BYTES)
    {
        Some(id) => Err(StoreError::InvalidParameter {
            message: format!(
                "log event request id of {} bytes is not within 1..={REQUEST_ID_MAX_BYTES}",
                id.len()
            ),
        }),
        None => Ok(()),
    }
}

/// One event as a chunk's blob holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawEvent<'a> {
    timestamp_ms: i64,
    request_id: Option<&'a str>,
    message: &'a str,
}

/// Decodes a chunk's blob, handing each `(index, event)` to `f`; `f` returns `false` to stop
/// early. A malformed blob is `StoreError::Corrupt`.
fn decode_events(
    chunk_id: i64,
    data: &[u8],
    mut f: impl FnMut(usize, RawEvent<'_>) -> bool,
) -> Result<(), StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt {
        what: format!("log chunk {chunk_id}"),
        source: format!("malformed event encoding: {why}").into(),
    };
    let utf8 = |source: std::str::Utf8Error| StoreError::Corrupt {
        what: format!("log chunk {chunk_id}"),
        source: Box::new(source),
    };
    let mut rest = data;
    let mut index = 0;
    while !rest.is_empty() {
        let (ts, after) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt("truncated timestamp"))?;
        let (&id_len, after) = after
            .split_first()
            .ok_or_else(|| corrupt("truncated request id length"))?;
        let id_len = usize::from(id_len);
        if id_len > REQUEST_ID_MAX_BYTES {
            return Err(corrupt("request id too long"));
        }
        if after.len() < id_len {
            return Err(corrupt("truncated request id"));
        }
        let (id, after) = after.split_at(id_len);
        let (len, after) = after
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("truncated message length"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if after.len() < len {
            return Err(corrupt("truncated message"));
        }
        let (body, after) = after.split_at(len);
        let event = RawEvent {
            timestamp_ms: i64::from_le_bytes(*ts),
            request_id: match id_len {
                0 => None,
                _ => Some(std::str::from_utf8(id).map_err(utf8)?),
            },
            message: std::str::from_utf8(body).map_err(utf8)?,
        };
        if !f(index, event) {
            return Ok(());
        }
        rest = after;
        index += 1;
    }
    Ok(())
}

/// Decodes all of a chunk's events, in order, with `ingestion_ms` as their ingestion time.
fn decode_all(
    chunk_id: i64,
    data: &[u8],
    ingestion_ms: i64,
) -> Result<Vec<OutputLogEvent>, StoreError> {
    let mut out = Vec::new();
    decode_events(chunk_id, data, |_, e| {
        out.push(output(e, ingestion_ms));
        true
    })?;
    Ok(out)
}

fn parse_pos_token(token: &str, prefix: &str) -> Option<Pos> {
    let digits = token.strip_prefix(prefix)?;
    let digits = digits.strip_suffix("/s").unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn forward_token(p: Pos) -> String {
    format!("f/{:020}/s", p.max(0))
}

fn backward_token(p: Pos) -> String {
    format!("b/{:020}/s", p.max(0))
}

fn event_bytes(message: &str) -> usize {
    message.len() + EVENT_OVERHEAD_BYTES
}

fn clamp_limit(limit: Option<usize>) -> usize {
    limit
        .unwrap_or(LOG_EVENTS_MAX_LIMIT)
        .clamp(1, LOG_EVENTS_MAX_LIMIT)
}

/// A parsed filter pattern for unstructured log events.
#[derive(Debug, Default, PartialEq, Eq)]
struct FilterPattern {
    /// All must appear.
    required: Vec<String>,
    /// At least one must appear, if any are given (`?term`).
    any: Vec<String>,
    /// None may appear (`-term`).
    excluded: Vec<String>,
}

impl FilterPattern {
    fn parse(pattern: &str) -> Result<FilterPattern, StoreError> {
        let invalid = || StoreError::InvalidFilterPattern {
            pattern: pattern.to_owned(),
        };
        let trimmed = pattern.trim();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            return Err(invalid());
        }
        let mut out = FilterPattern::default();
        let mut chars = trimmed.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let Some(&first) = chars.peek() else { break };
            let list = match first {
                '?' => {
                    chars.next();
                    &mut out.any
                }
                '-' => {
                    chars.next();
                    &mut out.excluded
                }
                _ => &mut out.required,
            };
            let mut term = String::new();
            if chars.next_if_eq(&'"').is_some() {
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => term.extend(chars.next()),
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => term.push(c),
                    }
                }
                if !closed {
                    return Err(invalid());
                }
            } else {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    term.push(c);
                }
            }
            if term.is_empty() {
                return Err(invalid());
            }
            list.push(term);
        }
        Ok(out)
    }

    /// Whether `event` matches: a term appears in it when its message contains the term or
    /// its request id equals the term.
    fn matches(&self, event: &RawEvent<'_>) -> bool {
        let appears =
            |t: &String| event.message.contains(t.as_str()) || event.request_id == Some(t.as_str());
        self.required.iter().all(appears)
            && (self.any.is_empty() || self.any.iter().any(appears))
            && !self.excluded.iter().any(appears)
    }
}

/// A chunk row's header as queries read it.
struct Chunk {
    id: i64,
    stream_id: i64,
    ingestion_ms: i64,
}

impl Store {
    /// Appends a batch of events to a stream, creating the group and the stream on first use.
    ///
    /// One transaction per call and one row per (stream, ≤1,000 events); meant to be called
    /// by a log-writer thread with batches, not per line. Events keep the order given.
    pub fn append_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[LogEvent],
    ) -> Result<(), StoreError> {
        self.append_log_batch(&[StreamEvents {
            group,
            stream,
            events,
        }])
    }

    /// Appends events of several streams in ONE transaction: what a log writer that collects
    /// lines of many environments calls, so a commit costs once per batch rather than once
    /// per stream. Order is kept within each stream.
    pub fn append_log_batch(&self, batch: &[StreamEvents<'_>]) -> Result<(), StoreError> {
        if batch.iter().all(|b| b.events.is_empty()) {
            return Ok(());
        }
        for b in batch {
            check_request_ids(b.events)?;
        }
        let now = now_ms();
        let mut guard = self.writer();
        let writer = &mut *guard;
        let tx = writer
            .conn
            .transaction()
            .map_err(StoreError::db("begin append log events"))?;
        let mut new_ids = Vec::new();
        for b in batch.iter().filter(|b| !b.events.is_empty()) {
            let key = (b.group.to_owned(), b.stream.to_owned());
            let stream_id = match writer.stream_ids.get(&key).copied() {
                Some(id) => id,
                None => {
                    let id = ensure_stream(&tx, b.group, b.stream, now)?;
                    new_ids.push((key, id));
                    id
                }
            };
            append_chunks(&tx, stream_id, b.group, b.events, now)?;
        }
        tx.commit().map_err(StoreError::db("commit log events"))?;
        for (key, id) in new_ids {
            if writer.stream_ids.len() >= STREAM_ID_CACHE_MAX {
                writer.stream_ids.clear();
            }
            writer.stream_ids.insert(key, id);
        }
        Ok(())
    }

    /// GetLogEvents: one page of a stream's events in append order.
    ///
    /// Without a token, the newest `limit` events (or the oldest with `start_from_head`);
    /// with `f/...`, the events after it; with `b/...`, the `limit` events before it.
    pub fn get_log_events(&self, q: &GetLogEventsQuery) -> Result<LogEventsPage, StoreError> {
        let limit = clamp_limit(q.limit);
        let start = q.start_time_ms.unwrap_or(i64::MIN);
        let end = q.end_time_ms.unwrap_or(i64::MAX);
        // `Some(p)`: forward after p; `Err(p)`: backward before p.
        let direction: Result<Pos, Pos> = match q.next_token.as_deref() {
            Some(t) => {
                if let Some(p) = parse_pos_token(t, "f/") {
                    Ok(p)
                } else if let Some(p) = parse_pos_token(t, "b/") {
                    Err(p)
                } else {
                    return Err(StoreError::InvalidToken {
                        token: t.to_owned(),
                    });
                }
            }
            None if q.start_from_head => Ok(-1),
            None => Err(i64::MAX),
        };
        let conn = self.reader();
        let stream_id = stream_id(&conn, &q.group, &q.stream)?;
        let in_range = |ts: i64| ts >= start && ts < end;
        let mut events: Vec<(Pos, OutputLogEvent)> = Vec::new();
        let mut bytes = 0usize;
        match direction {
            Ok(after) => {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, ingestion_ms, data FROM log_chunks
                         WHERE stream_id = ?1 AND id >= ?2 AND max_ts >= ?3 AND min_ts < ?4
                         ORDER BY id",
                    )
                    .map_err(StoreError::db("read log events"))?;
                let mut rows = stmt
                    .query(params![stream_id, after >> POS_INDEX_BITS, start, end])
                    .map_err(StoreError::db("read log events"))?;
                'chunks: while let Some(row) =
                    rows.next().map_err(StoreError::db("read log events"))?
                {
                    let (id, ingestion, data) = chunk_row(row)?;
                    let mut full = false;
                    decode_events(id, data, |i, e| {
                        let p = pos(id, i);
                        if p <= after || !in_range(e.timestamp_ms) {
                            return true;
                        }
                        if !events.is_empty() && bytes + event_bytes(e.message) > PAGE_MAX_BYTES {
                            full = true;
                            return false;
                        }
                        bytes += event_bytes(e.message);
                        events.push((p, output(e, ingestion)));
                        full = events.len() >= limit;
                        !full
                    })?;
                    if full {
                        break 'chunks;
                    }
                }
            }
            Err(before) => {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, ingestion_ms, data FROM log_chunks
                         WHERE stream_id = ?1 AND id <= ?2 AND max_ts >= ?3 AND min_ts < ?4
                         ORDER BY id DESC",
                    )
                    .map_err(StoreError::db("read log events"))?;
                let mut rows = stmt
                    .query(params![stream_id, before >> POS_INDEX_BITS, start, end])
                    .map_err(StoreError::db("read log events"))?;
                'chunks: while let Some(row) =
                    rows.next().map_err(StoreError::db("read log events"))?
                {
                    let (id, ingestion, data) = chunk_row(row)?;
                    for (i, e) in decode_all(id, data, ingestion)?
                        .into_iter()
                        .enumerate()
                        .rev()
                    {
                        let p = pos(id, i);
                        if p >= before || !in_range(e.timestamp_ms) {
                            continue;
                        }
                        if !events.is_empty() && bytes + event_bytes(&e.message) > PAGE_MAX_BYTES {
                            break 'chunks;
                        }
                        bytes += event_bytes(&e.message);
                        events.push((p, e));
                        if events.len() >= limit {
                            break 'chunks;
                        }
                    }
                }
                events.reverse();
            }
        }
        let (next_forward_token, next_backward_token) = match (events.first(), events.last()) {
            (Some((first, _)), Some((last, _))) => (forward_token(*last), backward_token(*first)),
            _ => match (&q.next_token, direction) {
                // Nothing further this way: hand the caller's token back, as AWS does.
                (Some(t), Ok(after)) => (t.clone(), backward_token(after + 1)),
                (Some(t), Err(before)) => (forward_token(before - 1), t.clone()),
                // No token and nothing in range: tokens at the stream's current end, so
                // following the forward token yields only events appended later.
                (None, _) => {
                    let end = stream_end(&conn, stream_id)?;
                    (forward_token(end), backward_token(end + 1))
                }
            },
        };
        Ok(LogEventsPage {
            events: events.into_iter().map(|(_, e)| e).collect(),
            next_forward_token,
            next_backward_token,
        })
    }

    /// FilterLogEvents: matching events of a group's streams, in append order.
    pub fn filter_log_events(
        &self,
        q: &FilterLogEventsQuery,
    ) -> Result<FilteredEventsPage, StoreError> {
        if q.stream_names.is_some() && q.stream_name_prefix.is_some() {
            return Err(StoreError::InvalidParameter {
                message: "logStreamNames and logStreamNamePrefix are mutually exclusive".into(),
            });
        }
        let pattern = FilterPattern::parse(q.filter_pattern.as_deref().unwrap_or(""))?;
        let after: Pos = match q.next_token.as_deref() {
            Some(t) => parse_filter_token(t).ok_or_else(|| StoreError::InvalidToken {
                token: t.to_owned(),
            })?,
            None => -1,
        };
        let limit = clamp_limit(q.limit);
        let start = q.start_time_ms.unwrap_or(i64::MIN);
        let end = q.end_time_ms.unwrap_or(i64::MAX);
        let conn = self.reader();
        require_group(&conn, &q.group)?;
        let mut streams: HashMap<i64, String> = HashMap::new();
        {
            let mut stmt = conn
                .prepare_cached("SELECT id, name FROM log_streams WHERE group_name = ?1")
                .map_err(StoreError::db("read log streams"))?;
            let rows = stmt
                .query_map([&q.group], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(StoreError::db("read log streams"))?;
            for row in rows {
                let (id, name) = row.map_err(StoreError::db("read log streams"))?;
                let wanted = match (&q.stream_names, &q.stream_name_prefix) {
                    (Some(names), _) => names.contains(&name),
                    (_, Some(prefix)) => name.starts_with(prefix.as_str()),
                    _ => true,
                };
                if wanted {
                    streams.insert(id, name);
                }
            }
        }
        if streams.is_empty() {
            return Ok(FilteredEventsPage {
                events: Vec::new(),
                next_token: None,
            });
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, stream_id, ingestion_ms, data FROM log_chunks
                 WHERE group_name = ?1 AND id >= ?2 AND max_ts >= ?3 AND min_ts < ?4
                 ORDER BY id",
            )
            .map_err(StoreError::db("filter log events"))?;
        let mut rows = stmt
            .query(params![q.group, after >> POS_INDEX_BITS, start, end])
            .map_err(StoreError::db("filter log events"))?;
        let mut events: Vec<FilteredLogEvent> = Vec::new();
        let mut bytes = 0usize;
        let mut last_returned: Pos = after;
        let mut scanned = 0usize;
        let mut next_token = None;
        'chunks: while let Some(row) = rows.next().map_err(StoreError::db("filter log events"))? {
            let chunk = Chunk {
                id: row.get(0).map_err(StoreError::db("filter log events"))?,
                stream_id: row.get(1).map_err(StoreError::db("filter log events"))?,
                ingestion_ms: row.get(2).map_err(StoreError::db("filter log events"))?,
            };
            let Some(stream_name) = streams.get(&chunk.stream_id) else {
                continue;
            };
            scanned += 1;
            if scanned > FILTER_SCAN_MAX_CHUNKS {
                // Bound one call's work; resume from here next time.
                next_token = Some(filter_token(last_returned.max(pos(chunk.id, 0) - 1)));
                break;
            }
            let data = row
                .get_ref(3)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(StoreError::db("filter log events"))?;
            let mut stop = false;
            decode_events(chunk.id, data, |i, e| {
                let p = pos(chunk.id, i);
                let ts = e.timestamp_ms;
                if p <= after || ts < start || ts >= end || !pattern.matches(&e) {
                    return true;
                }
                if events.len() >= limit
                    || (!events.is_empty() && bytes + event_bytes(e.message) > PAGE_MAX_BYTES)
                {
                    // One more match exists: the search is not finished.
                    stop = true;
                    return false;
                }
                bytes += event_bytes(e.message);
                last_returned = p;
                events.push(FilteredLogEvent {
                    log_stream_name: stream_name.clone(),
                    timestamp_ms: ts,
                    message: e.message.to_owned(),
                    ingestion_time_ms: chunk.ingestion_ms,
                    event_id: format!("{p:020}"),
                    request_id: e.request_id.map(str::to_owned),
                });
                true
            })?;
            if stop {
                next_token = Some(filter_token(last_returned));
                break 'chunks;
            }
        }
        Ok(FilteredEventsPage { events, next_token })
    }

    /// DescribeLogGroups: groups in name order whose name starts with `prefix`; `limit` is
    /// clamped to 1..=50 (0 means 50).
    pub fn describe_log_groups(
        &self,
        prefix: Option<&str>,
        next_token: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<LogGroupInfo>, Option<String>), StoreError> {
        let limit = clamp_describe_limit(limit);
        let after = match next_token {
            Some(t) => decode_name_token(t, "g:")?,
            None => String::new(),
        };
        let prefix = prefix.unwrap_or("");
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, creation_ms, retention_days, stored_bytes FROM log_groups
                 WHERE name > ?1 AND substr(name, 1, length(?2)) = ?2
                 ORDER BY name LIMIT ?3",
            )
            .map_err(StoreError::db("describe log groups"))?;
        let rows = stmt
            .query_map(params![after, prefix, (limit + 1) as i64], |r| {
                Ok(LogGroupInfo {
                    name: r.get(0)?,
                    creation_time_ms: r.get(1)?,
                    retention_in_days: r.get(2)?,
                    stored_bytes: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })
            .map_err(StoreError::db("describe log groups"))?;
        let mut out = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::db("describe log groups"))?;
        let next = if out.len() > limit {
            out.truncate(limit);
            out.last().map(|g| encode_token(&format!("g:{}", g.name)))
        } else {
            None
        };
        Ok((out, next))
    }

    /// DescribeLogStreams: a group's streams, by name or by last event time.
    pub fn describe_log_streams(
        &self,
        q: &DescribeLogStreamsQuery,
    ) -> Result<(Vec<LogStreamInfo>, Option<String>), StoreError> {
        if q.order_by == LogStreamOrder::LastEventTime && q.prefix.is_some() {
            return Err(StoreError::InvalidParameter {
                message: "Cannot order by LastEventTime with a logStreamNamePrefix.".into(),
            });
        }
        let limit = clamp_describe_limit(q.limit);
        let conn = self.reader();
        require_group(&conn, &q.group)?;
        let prefix = q.prefix.as_deref().unwrap_or("");
        // Streams without events sort as if their last event were at i64::MIN.
        let (cursor_key, cursor_name): (i64, Option<String>) = match q.next_token.as_deref() {
            None => (0, None),
            Some(t) => {
                let invalid = || StoreError::InvalidToken {
                    token: t.to_owned(),
                };
                let raw = decode_token(t).ok_or_else(invalid)?;
                match q.order_by {
                    LogStreamOrder::LogStreamName => {
                        let name = raw.strip_prefix("n:").ok_or_else(invalid)?;
                        (0, Some(name.to_owned()))
                    }
                    LogStreamOrder::LastEventTime => {
                        let rest = raw.strip_prefix("t:").ok_or_else(invalid)?;
                        let (key, name) = rest.split_once(':').ok_or_else(invalid)?;
                        (key.parse().map_err(|_| invalid())?, Some(name.to_owned()))
                    }
                }
            }
        };
        let (cmp, dir) = if q.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let (order_key, cursor_clause, order_clause) = match q.order_by {
            LogStreamOrder::LogStreamName => (
                "0",
                format!("AND (?4 IS NULL OR (?3 IS NOT NULL AND name {cmp} ?4))"),
                format!("name {dir}"),
            ),
            LogStreamOrder::LastEventTime => {
                let key = "IFNULL(last_event_ms, -9223372036854775808)";
                (
                    key,
                    format!("AND (?4 IS NULL OR ({key}, name) {cmp} (?3, ?4))"),
                    format!("{key} {dir}, name {dir}"),
                )
            }
        };
        let sql = format!(
            "SELECT name, creation_ms, first_event_ms, last_event_ms, last_ingestion_ms, stored_bytes,
                    {order_key}
             FROM log_streams
             WHERE group_name = ?1 AND substr(name, 1, length(?2)) = ?2 {cursor_clause}
             ORDER BY {order_clause} LIMIT ?5"
        );
        let mut stmt = conn
            .prepare_cached(&sql)
            .map_err(StoreError::db("describe log streams"))?;
        let rows = stmt
            .query_map(
                params![q.group, prefix, cursor_key, cursor_name, (limit + 1) as i64],
                |r| {
                    Ok((
                        LogStreamInfo {
                            name: r.get(0)?,
                            creation_time_ms: r.get(1)?,
                            first_event_timestamp_ms: r.get(2)?,
                            last_event_timestamp_ms: r.get(3)?,
                            last_ingestion_time_ms: r.get(4)?,
                            stored_bytes: r.get::<_, i64>(5)?.max(0) as u64,
                        },
                        r.get::<_, i64>(6)?,
                    ))
                },
            )
            .map_err(StoreError::db("describe log streams"))?;
        let mut out = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::db("describe log streams"))?;
        let next = if out.len() > limit {
            out.truncate(limit);
            out.last().map(|(s, key)| match q.order_by {
                LogStreamOrder::LogStreamName => encode_token(&format!("n:{}", s.name)),
                LogStreamOrder::LastEventTime => encode_token(&format!("t:{key}:{}", s.name)),
            })
        } else {
            None
        };
        Ok((out.into_iter().map(|(s, _)| s).collect(), next))
    }

    /// DeleteLogGroup: removes the group, its streams and events; `false` if it did not exist.
    pub fn delete_log_group(&self, group: &str) -> Result<bool, StoreError> {
        let mut guard = self.writer();
        let writer = &mut *guard;
        let tx = writer
            .conn
            .transaction()
            .map_err(StoreError::db("begin delete log group"))?;
        tx.execute("DELETE FROM log_chunks WHERE group_name = ?1", [group])
            .map_err(StoreError::db("delete log events"))?;
        tx.execute("DELETE FROM log_streams WHERE group_name = ?1", [group])
            .map_err(StoreError::db("delete log streams"))?;
        let n = tx
            .execute("DELETE FROM log_groups WHERE name = ?1", [group])
            .map_err(StoreError::db("delete log group"))?;
        tx.commit()
            .map_err(StoreError::db("commit delete log group"))?;
        writer.stream_ids.retain(|(g, _), _| g != group);
        Ok(n > 0)
    }

    /// PutRetentionPolicy / DeleteRetentionPolicy: records `retentionInDays` for a group
    /// (`None` removes the policy); `apply_log_retention`, driven by the caller, enforces it.
    pub fn set_log_group_retention(
        &self,
        group: &str,
        days: Option<u32>,
    ) -> Result<(), StoreError> {
        let n = self
            .writer()
            .conn
            .execute(
                "UPDATE log_groups SET retention_days = ?2 WHERE name = ?1",
                params![group, days],
            )
            .map_err(StoreError::db("set log retention"))?;
        if n == 0 {
            return Err(StoreError::LogGroupNotFound {
                group: group.to_owned(),
            });
        }
        Ok(())
    }

    /// Retention as CloudWatch Logs applies it: in every group, deletes the events older than
    /// `now_ms` minus the group's `retentionInDays` (PutRetentionPolicy), or minus
    /// `default_retention_days` for a group without a policy. Whole chunks go (a chunk when its
    /// newest event has expired); stream and group `storedBytes` and a stream's
    /// `firstEventTimestamp` follow. Streams left empty stay, as on AWS. Returns how many
    /// events were deleted. One transaction for all groups; time is the caller's `now_ms`.
    pub fn apply_log_retention(
        &self,
        now_ms: i64,
        default_retention_days: u32,
    ) -> Result<u64, StoreError> {
        let mut guard = self.writer();
        let tx = guard
            .conn
            .transaction()
            .map_err(StoreError::db("begin apply log retention"))?;
        let mut cutoffs: Vec<(String, i64)> = Vec::new();
        {
            let mut stmt = tx
                .prepare("SELECT name, ?1 - COALESCE(retention_days, ?2) * ?3 FROM log_groups")
                .map_err(StoreError::db("read log retention"))?;
            let rows = stmt
                .query_map(params![now_ms, default_retention_days, MS_PER_DAY], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(StoreError::db("read log retention"))?;
            for row in rows {
                cutoffs.push(row.map_err(StoreError::db("read log retention"))?);
            }
        }
        let mut deleted = 0;
        for (group, cutoff_ms) in &cutoffs {
            deleted += purge_chunks(&tx, group, *cutoff_ms)?;
        }
        tx.commit()
            .map_err(StoreError::db("commit apply log retention"))?;
        tracing::debug!(
            now_ms,
            default_retention_days,
            groups = cutoffs.len(),
            deleted,
            "store.apply_log_retention"
        );
        Ok(deleted)
    }
}

/// Milliseconds in a day, for `retentionInDays`.
const MS_PER_DAY: i64 = 86_400_000;

/// The `(id, ingestion_ms, data)` columns of a `log_chunks` row selected in that order.
fn chunk_row<'r>(row: &'r rusqlite::Row<'_>) -> Result<(i64, i64, &'r [u8]), StoreError> {
    let columns = || -> rusqlite::Result<(i64, i64, &'r [u8])> {
        Ok((row.get(0)?, row.get(1)?, row.get_ref(2)?.as_blob()?))
    };
    columns().map_err(StoreError::db("read log events"))
}

/// Deletes the chunks of `group` whose newest event is older than
/// `cutoff_ms`, keeping stream and group counters consistent; returns the events deleted.
fn purge_chunks(
    tx: &rusqlite::Transaction<'_>,
    group: &str,
    cutoff_ms: i64,
) -> Result<u64, StoreError> {
    let mut affected: Vec<(i64, String, i64, i64)> = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT stream_id, group_name, SUM(event_count), SUM(bytes) FROM log_chunks
                 WHERE max_ts < ?1 AND group_name = ?2 GROUP BY stream_id",
            )
            .map_err(StoreError::db("purge logs"))?;
        let rows = stmt
            .query_map(params![cutoff_ms, group], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(StoreError::db("purge logs"))?;
        for row in rows {
            affected.push(row.map_err(StoreError::db("purge logs"))?);
        }
    }
    if affected.is_empty() {
        return Ok(0);
    }
    tx.prepare_cached("DELETE FROM log_chunks WHERE max_ts < ?1 AND group_name = ?2")
        .and_then(|mut s| s.execute(params![cutoff_ms, group]))
        .map_err(StoreError::db("purge logs"))?;
    let mut deleted: u64 = 0;
    for (stream_id, group, count, bytes) in &affected {
        deleted += (*count).max(0) as u64;
        tx.prepare_cached(
            "UPDATE log_streams SET stored_bytes = MAX(stored_bytes - ?2, 0),
               first_event_ms = IFNULL((SELECT MIN(min_ts) FROM log_chunks WHERE stream_id = ?1), first_event_ms)
             WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![stream_id, bytes]))
        .map_err(StoreError::db("purge logs"))?;
        tx.prepare_cached(
            "UPDATE log_groups SET stored_bytes = MAX(stored_bytes - ?2, 0) WHERE name = ?1",
        )
        .and_then(|mut s| s.execute(params![group, bytes]))
        .map_err(StoreError::db("purge logs"))?;
    }
    Ok(deleted)
}

fn output(e: RawEvent<'_>, ingestion: i64) -> OutputLogEvent {
    OutputLogEvent {
        timestamp_ms: e.timestamp_ms,
        message: e.message.to_owned(),
        ingestion_time_ms: ingestion,
        request_id: e.request_id.map(str::to_owned),
    }
}

fn clamp_describe_limit(limit: usize) -> usize {
    if limit == 0 {
        DESCRIBE_MAX_LIMIT
    } else {
        limit.min(DESCRIBE_MAX_LIMIT)
    }
}

fn encode_token(raw: &str) -> String {
    URL_SAFE_NO_PAD.encode(raw.as_bytes())
}

fn decode_token(token: &str) -> Option<String> {
    String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()
}

fn decode_name_token(token: &str, prefix: &str) -> Result<String, StoreError> {
    decode_token(token)
        .and_then(|raw| raw.strip_prefix(prefix).map(str::to_owned))
        .ok_or_else(|| StoreError::InvalidToken {
            token: token.to_owned(),
        })
}

fn filter_token(p: Pos) -> String {
    encode_token(&format!("e:{p}"))
}

fn parse_filter_token(token: &str) -> Option<Pos> {
    decode_token(token)?.strip_prefix("e:")?.parse().ok()
}

fn require_group(conn: &rusqlite::Connection, group: &str) -> Result<(), StoreError> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM log_groups WHERE name = ?1")
        .and_then(|mut s| s.exists([group]))
        .map_err(StoreError::db("read log group"))?;
    if !exists {
        return Err(StoreError::LogGroupNotFound {
            group: group.to_owned(),
        });
    }
    Ok(())
}

fn stream_id(conn: &rusqlite::Connection, group: &str, stream: &str) -> Result<i64, StoreError> {
    let id: Option<i64> = conn
        .prepare_cached("SELECT id FROM log_streams WHERE group_name = ?1 AND name = ?2")
        .and_then(|mut s| s.query_row(params![group, stream], |r| r.get(0)).optional())
        .map_err(StoreError::db("read log stream"))?;
    match id {
        Some(id) => Ok(id),
        None => {
            require_group(conn, group)?;
            Err(StoreError::LogStreamNotFound {
                group: group.to_owned(),
                stream: stream.to_owned(),
            })
        }
    }
}

/// Position of a stream's last stored event, or 0 if it has none.
fn stream_end(conn: &rusqlite::Connection, stream_id: i64) -> Result<Pos, StoreError> {
    let last: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT id, event_count FROM log_chunks WHERE stream_id = ?1 ORDER BY id DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row([stream_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(StoreError::db("read log stream end"))?;
    Ok(last.map_or(0, |(id, count)| pos(id, (count - 1).max(0) as usize)))
}

/// Creates the log group and stream if needed; returns the stream's id.
fn ensure_stream(
    tx: &rusqlite::Transaction<'_>,
    group: &str,
    stream: &str,
    now: i64,
) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO log_groups (name, creation_ms) VALUES (?1, ?2)
         ON CONFLICT (name) DO NOTHING",
        params![group, now],
    )
    .map_err(StoreError::db("create log group"))?;
    tx.execute(
        "INSERT INTO log_streams (group_name, name, creation_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (group_name, name) DO NOTHING",
        params![group, stream, now],
    )
    .map_err(StoreError::db("create log stream"))?;
    tx.query_row(
        "SELECT id FROM log_streams WHERE group_name = ?1 AND name = ?2",
        params![group, stream],
        |r| r.get(0),
    )
    .map_err(StoreError::db("read log stream id"))
}

/// Appends one stream's events as chunks and updates the stream's and group's counters.
fn append_chunks(
    tx: &rusqlite::Transaction<'_>,
    stream_id: i64,
    group: &str,
    events: &[LogEvent],
    now: i64,
) -> Result<(), StoreError> {
    let mut total_bytes: i64 = 0;
    let mut min_ts = i64::MAX;
    let mut max_ts = i64::MIN;
    {
        let mut insert = tx
                .prepare_cached(
                    "INSERT INTO log_chunks
                       (stream_id, group_name, event_count, min_ts, max_ts, ingestion_ms, bytes, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(StoreError::db("append log events"))?;
        let mut start = 0;
        while start < events.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < events.len()
                && end - start < CHUNK_MAX_EVENTS
                && (end == start || bytes + events[end].message.len() <= CHUNK_MAX_BYTES)
            {
                bytes += events[end].message.len();
                end += 1;
            }
            let chunk = &events[start..end];
            let lo = chunk
                .iter()
                .map(|e| e.timestamp_ms)
                .min()
                .expect("non-empty chunk");
            let hi = chunk
                .iter()
                .map(|e| e.timestamp_ms)
                .max()
                .expect("non-empty chunk");
            min_ts = min_ts.min(lo);
            max_ts = max_ts.max(hi);
            total_bytes += bytes as i64;
            insert
                .execute(params![
                    stream_id,
                    group,
                    chunk.len() as i64,
                    lo,
                    hi,
                    now,
                    bytes as i64,
                    encode_events(chunk)
                ])
                .map_err(StoreError::db("append log events"))?;
            start = end;
        }
    }
    tx.prepare_cached(
        "UPDATE log_streams SET
               first_event_ms = MIN(IFNULL(first_event_ms, ?2), ?2),
               last_event_ms = MAX(IFNULL(last_event_ms, ?3), ?3),
               last_ingestion_ms = ?4,
               stored_bytes = stored_bytes + ?5
             WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![stream_id, min_ts, max_ts, now, total_bytes]))
    .map_err(StoreError::db("update log stream"))?;
    tx.prepare_cached("UPDATE log_groups SET stored_bytes = stored_bytes + ?2 WHERE name = ?1")
        .and_then(|mut s| s.execute(params![group, total_bytes]))
        .map_err(StoreError::db("update log group"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "/aws/lambda/f";
    const S: &str = "2026/11/24/[$LATEST]0123456789abcdef0123456789abcdef";

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn ev(ts: i64, message: &str) -> LogEvent {
        LogEvent {
            timestamp_ms: ts,
            message: message.to_owned(),
            request_id: None,
        }
    }

    fn ev_in(ts: i64, request_id: &str, message: &str) -> LogEvent {
        LogEvent {
            request_id: Some(request_id.into()),
            ..ev(ts, message)
        }
    }

    /// Appends `n` events `line i` at ts `1000 + i` to (G, S) in batches of `batch`.
    fn fill(store: &Store, n: usize, batch: usize) {
        let events: Vec<LogEvent> = (0..n)
            .map(|i| ev(1000 + i as i64, &format!("line {i}")))
            .collect();
        for b in events.chunks(batch) {
            store.append_log_events(G, S, b).unwrap();
        }
    }

    fn messages(page: &LogEventsPage) -> Vec<String> {
        page.events.iter().map(|e| e.message.clone()).collect()
    }

    fn lines(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("line {i}")).collect()
    }

    fn get(store: &Store, token: Option<&str>, head: bool, limit: usize) -> LogEventsPage {
        store
            .get_log_events(&GetLogEventsQuery {
                group: G.into(),
                stream: S.into(),
                next_token: token.map(str::to_owned),
                limit: Some(limit),
                start_from_head: head,
                ..Default::default()
            })
            .unwrap()
    }

    #[test]
    fn get_log_events_pages_forward_from_head() {
        let (_d, store) = store();
        fill(&store, 25, 7);
        let p1 = get(&store, None, true, 10);
        assert_eq!(messages(&p1), lines(0..10));
        assert!(p1.events.iter().all(|e| e.ingestion_time_ms > 0));
        let p2 = get(&store, Some(&p1.next_forward_token), true, 10);
        assert_eq!(messages(&p2), lines(10..20));
        let p3 = get(&store, Some(&p2.next_forward_token), true, 10);
        assert_eq!(messages(&p3), lines(20..25));
        let p4 = get(&store, Some(&p3.next_forward_token), true, 10);
        assert!(p4.events.is_empty());
        // The end is signalled by the same token coming back.
        assert_eq!(p4.next_forward_token, p3.next_forward_token);
        assert!(p4.next_forward_token.starts_with("f/"));
        // Going back from page 3 gives page 2.
        let back = get(&store, Some(&p3.next_backward_token), true, 10);
        assert_eq!(messages(&back), lines(10..20));
        // New events show up after the last forward token (tailing).
        store.append_log_events(G, S, &[ev(5000, "late")]).unwrap();
        let p5 = get(&store, Some(&p4.next_forward_token), true, 10);
        assert_eq!(messages(&p5), vec!["late".to_string()]);
    }

    #[test]
    fn get_log_events_without_token_returns_newest_and_pages_backward() {
        let (_d, store) = store();
        fill(&store, 25, 4);
        let p1 = get(&store, None, false, 10);
        assert_eq!(messages(&p1), lines(15..25));
        let p2 = get(&store, Some(&p1.next_backward_token), false, 10);
        assert_eq!(messages(&p2), lines(5..15));
        assert!(p2.next_backward_token.starts_with("b/"));
        let p3 = get(&store, Some(&p2.next_backward_token), false, 10);
        assert_eq!(messages(&p3), lines(0..5));
        let p4 = get(&store, Some(&p3.next_backward_token), false, 10);
        assert!(p4.events.is_empty());
        assert_eq!(p4.next_backward_token, p3.next_backward_token);
        // Forward from the newest page: nothing yet.
        let p5 = get(&store, Some(&p1.next_forward_token), false, 10);
        assert!(p5.events.is_empty());
        assert_eq!(p5.next_forward_token, p1.next_forward_token);
    }

    #[test]
    fn get_log_events_on_empty_range_tails_new_events() {
        let (_d, store) = store();
        fill(&store, 3, 3);
        let q = GetLogEventsQuery {
            group: G.into(),
            stream: S.into(),
            start_time_ms: Some(100_000),
            ..Default::default()
        };
        let page = store.get_log_events(&q).unwrap();
        assert!(page.events.is_empty());
        store
            .append_log_events(G, S, &[ev(200_000, "new")])
            .unwrap();
        let next = get(&store, Some(&page.next_forward_token), true, 10);
        assert_eq!(messages(&next), vec!["new".to_string()]);
    }

    #[test]
    fn get_log_events_filters_time_range_and_keeps_append_order() {
        let (_d, store) = store();
        // Out-of-order timestamps within a batch keep append order.
        store
            .append_log_events(G, S, &[ev(30, "c"), ev(10, "a"), ev(20, "b"), ev(40, "d")])
            .unwrap();
        let page = store
            .get_log_events(&GetLogEventsQuery {
                group: G.into(),
                stream: S.into(),
                start_time_ms: Some(20),
                end_time_ms: Some(40),
                start_from_head: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(messages(&page), vec!["c", "b"]);
    }

    #[test]
    fn get_log_events_reports_missing_group_stream_and_bad_token() {
        let (_d, store) = store();
        fill(&store, 1, 1);
        let mut q = GetLogEventsQuery {
            group: "/aws/lambda/none".into(),
            stream: S.into(),
            ..Default::default()
        };
        assert!(matches!(
            store.get_log_events(&q),
            Err(StoreError::LogGroupNotFound { .. })
        ));
        q.group = G.into();
        q.stream = "nope".into();
        let err = store.get_log_events(&q).unwrap_err();
        assert!(matches!(err, StoreError::LogStreamNotFound { .. }));
        assert_eq!(err.aws_error_type(), "ResourceNotFoundException");
        q.stream = S.into();
        for bad in ["x/1", "f/", "f/abc", "b/-1"] {
            q.next_token = Some(bad.into());
            assert!(
                matches!(
                    store.get_log_events(&q),
                    Err(StoreError::InvalidToken { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn large_batches_split_into_chunks_and_respect_byte_cap() {
        let (_d, store) = store();
        let big = "x".repeat(100_000);
        let events: Vec<LogEvent> = (0..30).map(|i| ev(i, &big)).collect();
        store.append_log_events(G, S, &events).unwrap();
        let chunks: i64 = store
            .reader()
            .query_row("SELECT COUNT(*) FROM log_chunks", [], |r| r.get(0))
            .unwrap();
        assert!(chunks >= 3, "{chunks} chunks");
        let page = get(&store, None, true, 10_000);
        // 1 MB page: 10 events of 100,026 counted bytes fit, 11 do not.
        assert_eq!(page.events.len(), 10);
        let rest = get(&store, Some(&page.next_forward_token), true, 10_000);
        assert_eq!(rest.events.len(), 10);
    }

    fn filter(store: &Store, q: FilterLogEventsQuery) -> Vec<FilteredLogEvent> {
        let mut all = Vec::new();
        let mut q = q;
        loop {
            let page = store.filter_log_events(&q).unwrap();
            all.extend(page.events);
            match page.next_token {
                Some(t) => q.next_token = Some(t),
                None => return all,
            }
        }
    }

    fn fq(pattern: &str) -> FilterLogEventsQuery {
        FilterLogEventsQuery {
            group: G.into(),
            filter_pattern: Some(pattern.into()),
            ..Default::default()
        }
    }

    #[test]
    fn filter_log_events_matches_terms_phrases_and_alternatives() {
        let (_d, store) = store();
        store
            .append_log_events(
                G,
                "s1",
                &[
                    ev(1, "ERROR disk full"),
                    ev(2, "INFO all good"),
                    ev(3, "WARN disk slow"),
                ],
            )
            .unwrap();
        store
            .append_log_events(
                G,
                "s2",
                &[ev(4, "error lowercase"), ev(5, "ERROR timeout after 3s")],
            )
            .unwrap();
        let msgs = |q| {
            filter(&store, q)
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            msgs(fq("ERROR")),
            vec!["ERROR disk full", "ERROR timeout after 3s"]
        );
        assert_eq!(msgs(fq("ERROR disk")), vec!["ERROR disk full"]);
        assert_eq!(msgs(fq("\"disk full\"")), vec!["ERROR disk full"]);
        assert_eq!(msgs(fq("\"full disk\"")), Vec::<String>::new());
        assert_eq!(
            msgs(fq("?WARN ?INFO")),
            vec!["INFO all good", "WARN disk slow"]
        );
        assert_eq!(msgs(fq("ERROR -timeout")), vec!["ERROR disk full"]);
        assert_eq!(msgs(fq("")).len(), 5);
        let events = filter(&store, fq("ERROR"));
        assert_eq!(events[0].log_stream_name, "s1");
        assert_eq!(events[1].log_stream_name, "s2");
        assert_ne!(events[0].event_id, events[1].event_id);
        // Stream selection.
        let mut q = fq("");
        q.stream_names = Some(vec!["s2".into()]);
        assert_eq!(filter(&store, q).len(), 2);
        let mut q = fq("");
        q.stream_names = Some(vec!["missing".into()]);
        assert_eq!(filter(&store, q).len(), 0);
        let mut q = fq("");
        q.stream_name_prefix = Some("s1".into());
        assert_eq!(filter(&store, q).len(), 3);
        // Time range.
        let mut q = fq("");
        q.start_time_ms = Some(2);
        q.end_time_ms = Some(5);
        assert_eq!(
            msgs(q),
            vec!["INFO all good", "WARN disk slow", "error lowercase"]
        );
    }

    #[test]
    fn filter_log_events_rejects_bad_input() {
        let (_d, store) = store();
        fill(&store, 1, 1);
        for bad in [
            "{ $.level = \"ERROR\" }",
            "[ip, user]",
            "\"unterminated",
            "? x",
        ] {
            assert!(
                matches!(
                    store.filter_log_events(&fq(bad)),
                    Err(StoreError::InvalidFilterPattern { .. })
                ),
                "{bad}"
            );
        }
        let mut q = fq("");
        q.stream_names = Some(vec![S.into()]);
        q.stream_name_prefix = Some("2026".into());
        assert!(matches!(
            store.filter_log_events(&q),
            Err(StoreError::InvalidParameter { .. })
        ));
        let mut q = fq("");
        q.next_token = Some("garbage".into());
        assert!(matches!(
            store.filter_log_events(&q),
            Err(StoreError::InvalidToken { .. })
        ));
        let mut q = fq("");
        q.group = "/aws/lambda/none".into();
        assert!(matches!(
            store.filter_log_events(&q),
            Err(StoreError::LogGroupNotFound { .. })
        ));
    }

    #[test]
    fn filter_log_events_pages_with_next_token() {
        let (_d, store) = store();
        fill(&store, 95, 10);
        store
            .append_log_events(G, "other", &[ev(1, "line other")])
            .unwrap();
        let mut q = fq("line");
        q.limit = Some(20);
        let first = store.filter_log_events(&q).unwrap();
        assert_eq!(first.events.len(), 20);
        assert!(first.next_token.is_some());
        let all = filter(&store, q);
        assert_eq!(all.len(), 96);
        let ids: std::collections::HashSet<_> = all.iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(ids.len(), 96);
        // Exactly `limit` matches: no token on the page that ends the search.
        let mut q = fq("\"line other\"");
        q.limit = Some(1);
        assert_eq!(store.filter_log_events(&q).unwrap().next_token, None);
    }

    #[test]
    fn describes_log_groups_with_prefix_and_paging() {
        let (_d, store) = store();
        for name in [
            "/aws/lambda/a",
            "/aws/lambda/b",
            "/aws/lambda/c",
            "/other/x",
        ] {
            store
                .append_log_events(name, "s", &[ev(1, "hello")])
                .unwrap();
        }
        let (page, next) = store
            .describe_log_groups(Some("/aws/lambda/"), None, 2)
            .unwrap();
        assert_eq!(
            page.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
            ["/aws/lambda/a", "/aws/lambda/b"]
        );
        let (page2, next2) = store
            .describe_log_groups(Some("/aws/lambda/"), next.as_deref(), 2)
            .unwrap();
        assert_eq!(page2.len(), 1);
        assert_eq!(next2, None);
        let g = &page[0];
        assert_eq!(g.stored_bytes, 5);
        assert_eq!(g.retention_in_days, None);
        assert!(g.creation_time_ms > 0);
        assert_eq!(
            g.arn("us-east-1"),
            "arn:aws:logs:us-east-1:000000000000:log-group:/aws/lambda/a:*"
        );
        assert_eq!(store.describe_log_groups(None, None, 0).unwrap().0.len(), 4);
        store.set_log_group_retention("/other/x", Some(7)).unwrap();
        let (other, _) = store.describe_log_groups(Some("/other"), None, 50).unwrap();
        assert_eq!(other[0].retention_in_days, Some(7));
        assert!(store.set_log_group_retention("/none", Some(7)).is_err());
        assert!(matches!(
            store.describe_log_groups(None, Some("%%%"), 5),
            Err(StoreError::InvalidToken { .. })
        ));
    }

    #[test]
    fn describes_log_streams_by_name_and_last_event_time() {
        let (_d, store) = store();
        store
            .append_log_events(G, "b", &[ev(300, "x"), ev(100, "yy")])
            .unwrap();
        store.append_log_events(G, "a", &[ev(500, "x")]).unwrap();
        store.append_log_events(G, "c", &[ev(200, "x")]).unwrap();
        store.append_log_events(G, "b", &[ev(50, "zzz")]).unwrap();
        let names = |q: &DescribeLogStreamsQuery| {
            let mut out = Vec::new();
            let mut q = q.clone();
            loop {
                let (page, next) = store.describe_log_streams(&q).unwrap();
                assert!(page.len() <= q.limit.max(1));
                out.extend(page.into_iter().map(|s| s.name));
                match next {
                    Some(t) => q.next_token = Some(t),
                    None => return out,
                }
            }
        };
        let mut q = DescribeLogStreamsQuery {
            group: G.into(),
            limit: 1,
            ..Default::default()
        };
        assert_eq!(names(&q), ["a", "b", "c"]);
        q.descending = true;
        assert_eq!(names(&q), ["c", "b", "a"]);
        q.order_by = LogStreamOrder::LastEventTime;
        assert_eq!(names(&q), ["a", "b", "c"]); // last events 500, 300, 200
        q.descending = false;
        assert_eq!(names(&q), ["c", "b", "a"]);
        let (all, _) = store
            .describe_log_streams(&DescribeLogStreamsQuery {
                group: G.into(),
                prefix: Some("b".into()),
                ..Default::default()
            })
            .unwrap();
        let b = &all[0];
        assert_eq!(all.len(), 1);
        assert_eq!(
            (b.first_event_timestamp_ms, b.last_event_timestamp_ms),
            (Some(50), Some(300))
        );
        assert_eq!(b.stored_bytes, 6);
        assert!(b.last_ingestion_time_ms.is_some());
        assert_eq!(
            b.arn("eu-west-1", G),
            format!("arn:aws:logs:eu-west-1:000000000000:log-group:{G}:log-stream:b")
        );
        let bad = DescribeLogStreamsQuery {
            group: G.into(),
            prefix: Some("b".into()),
            order_by: LogStreamOrder::LastEventTime,
            ..Default::default()
        };
        assert!(matches!(
            store.describe_log_streams(&bad),
            Err(StoreError::InvalidParameter { .. })
        ));
        let missing = DescribeLogStreamsQuery {
            group: "/none".into(),
            ..Default::default()
        };
        assert!(matches!(
            store.describe_log_streams(&missing),
            Err(StoreError::LogGroupNotFound { .. })
        ));
        // A name-order token is not accepted for time order.
        let (_, next) = store
            .describe_log_streams(&DescribeLogStreamsQuery {
                group: G.into(),
                limit: 1,
                ..Default::default()
            })
            .unwrap();
        let cross = DescribeLogStreamsQuery {
            group: G.into(),
            order_by: LogStreamOrder::LastEventTime,
            next_token: next,
            ..Default::default()
        };
        assert!(matches!(
            store.describe_log_streams(&cross),
            Err(StoreError::InvalidToken { .. })
        ));
    }

    #[test]
    fn deletes_log_group_and_recreates_on_next_append() {
        let (_d, store) = store();
        fill(&store, 10, 5);
        assert!(store.delete_log_group(G).unwrap());
        assert!(!store.delete_log_group(G).unwrap());
        assert!(matches!(
            store.get_log_events(&GetLogEventsQuery {
                group: G.into(),
                stream: S.into(),
                ..Default::default()
            }),
            Err(StoreError::LogGroupNotFound { .. })
        ));
        let left: i64 = store
            .reader()
            .query_row("SELECT COUNT(*) FROM log_chunks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
        // The writer's cached stream id must not outlive the group.
        store.append_log_events(G, S, &[ev(1, "again")]).unwrap();
        assert_eq!(messages(&get(&store, None, true, 10)), vec!["again"]);
    }

    #[test]
    fn default_retention_purges_chunks_older_than_cutoff() {
        // With a 1-day default, `now` one day after 500 puts the cutoff at 500.
        let now = 500 + 86_400_000;
        let (_d, store) = store();
        store
            .append_log_events(G, S, &[ev(100, "old1"), ev(150, "old2")])
            .unwrap();
        store.append_log_events(G, S, &[ev(900, "new")]).unwrap();
        store
            .append_log_events("/aws/lambda/g2", "s", &[ev(120, "old3")])
            .unwrap();
        assert_eq!(store.apply_log_retention(now, 1).unwrap(), 3);
        assert_eq!(store.apply_log_retention(now, 1).unwrap(), 0);
        assert_eq!(messages(&get(&store, None, true, 10)), vec!["new"]);
        let (streams, _) = store
            .describe_log_streams(&DescribeLogStreamsQuery {
                group: G.into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(streams[0].stored_bytes, 3);
        assert_eq!(streams[0].first_event_timestamp_ms, Some(900));
        let (groups, _) = store.describe_log_groups(None, None, 50).unwrap();
        assert_eq!(
            groups.iter().map(|g| g.stored_bytes).collect::<Vec<_>>(),
            [3, 0]
        );
    }

    #[test]
    fn applies_each_groups_retention_policy_or_the_default() {
        const DAY: i64 = MS_PER_DAY;
        let now = 100 * DAY;
        let dir = tempfile::tempdir().unwrap();
        let short = "/aws/lambda/short";
        let default = "/aws/lambda/default";
        {
            let store = Store::open(dir.path()).unwrap();
            // `short` keeps 1 day: the 2-day-old chunk goes, the 12-hour-old one stays.
            store
                .append_log_events(short, "a", &[ev(now - 2 * DAY, "s-old")])
                .unwrap();
            store
                .append_log_events(short, "a", &[ev(now - DAY / 2, "s-new")])
                .unwrap();
            store
                .append_log_events(short, "b", &[ev(now - 3 * DAY, "s-b-old")])
                .unwrap();
            store.set_log_group_retention(short, Some(1)).unwrap();
            // `default` falls back to 7 days: 2 days old stays, 10 days old goes.
            store
                .append_log_events(default, "a", &[ev(now - 10 * DAY, "d-old")])
                .unwrap();
            store
                .append_log_events(default, "a", &[ev(now - 2 * DAY, "d-mid")])
                .unwrap();
            assert_eq!(store.apply_log_retention(now, 7).unwrap(), 3);
            assert_eq!(store.apply_log_retention(now, 7).unwrap(), 0);
        }
        let store = Store::open(dir.path()).unwrap();
        let all = |group: &str| {
            let mut q = fq("");
            q.group = group.into();
            filter(&store, q)
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
        };
        assert_eq!(all(short), ["s-new"]);
        assert_eq!(all(default), ["d-mid"]);
        let streams = |group: &str| {
            store
                .describe_log_streams(&DescribeLogStreamsQuery {
                    group: group.into(),
                    ..Default::default()
                })
                .unwrap()
                .0
        };
        let short_streams = streams(short);
        // The emptied stream stays, as on CloudWatch, with nothing stored.
        assert_eq!(
            short_streams
                .iter()
                .map(|s| (s.name.as_str(), s.stored_bytes))
                .collect::<Vec<_>>(),
            [("a", 5), ("b", 0)]
        );
        assert_eq!(
            short_streams[0].first_event_timestamp_ms,
            Some(now - DAY / 2)
        );
        assert_eq!(streams(default)[0].stored_bytes, 5);
        let (groups, _) = store.describe_log_groups(None, None, 50).unwrap();
        assert_eq!(
            groups
                .iter()
                .map(|g| (g.name.as_str(), g.stored_bytes, g.retention_in_days))
                .collect::<Vec<_>>(),
            [(default, 5, None), (short, 5, Some(1))]
        );
        // Removing the policy puts the group back on the (here shorter) default.
        store.set_log_group_retention(short, None).unwrap();
        assert_eq!(store.apply_log_retention(now + DAY, 0).unwrap(), 2);
        assert!(all(short).is_empty() && all(default).is_empty());
    }

    #[test]
    fn logs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            fill(&store, 12, 5);
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(messages(&get(&store, None, true, 100)), lines(0..12));
        fill(&store, 2, 2);
        assert_eq!(get(&store, None, true, 100).events.len(), 14);
    }

    #[test]
    fn parses_filter_patterns() {
        let p = FilterPattern::parse(r#"  ERROR "disk full" ?alpha ?"b c" -skip "say \"hi\"" "#)
            .unwrap();
        assert_eq!(p.required, ["ERROR", "disk full", "say \"hi\""]);
        assert_eq!(p.any, ["alpha", "b c"]);
        assert_eq!(p.excluded, ["skip"]);
        let text = |message| RawEvent {
            timestamp_ms: 0,
            request_id: None,
            message,
        };
        assert!(p.matches(&text("ERROR disk full alpha say \"hi\"")));
        assert!(!p.matches(&text("ERROR disk full alpha say \"hi\" skip")));
        assert!(!p.matches(&text("ERROR disk full say \"hi\"")));
        assert!(FilterPattern::parse("").unwrap().matches(&text("anything")));
    }

    #[test]
    fn pattern_terms_match_an_equal_request_id() {
        let line = |request_id, message| RawEvent {
            timestamp_ms: 0,
            request_id,
            message,
        };
        let by_id = FilterPattern::parse("rid-1").unwrap();
        assert!(by_id.matches(&line(Some("rid-1"), "hello")));
        assert!(by_id.matches(&line(None, "END RequestId: rid-1")));
        assert!(!by_id.matches(&line(Some("rid-2"), "hello")));
        assert!(!by_id.matches(&line(None, "hello")));
        // Equality, not containment: a piece of an id does not select the invocation.
        assert!(!FilterPattern::parse("rid")
            .unwrap()
            .matches(&line(Some("rid-1"), "hello")));
        // Combined with text terms, and as `?term` / `-term`.
        let both = FilterPattern::parse("rid-1 ERROR").unwrap();
        assert!(both.matches(&line(Some("rid-1"), "ERROR boom")));
        assert!(!both.matches(&line(Some("rid-1"), "INFO fine")));
        let any = FilterPattern::parse("?rid-1 ?rid-2").unwrap();
        assert!(any.matches(&line(Some("rid-2"), "x")));
        assert!(!any.matches(&line(Some("rid-3"), "x")));
        let not = FilterPattern::parse("-rid-1").unwrap();
        assert!(!not.matches(&line(Some("rid-1"), "x")));
        assert!(not.matches(&line(None, "x")));
    }

    #[test]
    fn events_round_trip_with_and_without_request_ids() {
        let events = vec![
            ev(1, "before any invocation"),
            ev_in(
                2,
                "c0ffee00-1234-4567-89ab-000000000001",
                "START RequestId: x",
            ),
            ev_in(3, "c0ffee00-1234-4567-89ab-000000000001", "printed"),
            ev_in(4, "c0ffee00-1234-4567-89ab-000000000001", ""),
            ev_in(5, &"r".repeat(REQUEST_ID_MAX_BYTES), "longest id"),
            ev(6, "between invocations: ünïcødé"),
        ];
        let blob = encode_events(&events);
        let mut decoded = Vec::new();
        decode_events(7, &blob, |i, e| {
            decoded.push((
                i,
                e.timestamp_ms,
                e.request_id.map(str::to_owned),
                e.message.to_owned(),
            ));
            true
        })
        .unwrap();
        let expected: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    i,
                    e.timestamp_ms,
                    e.request_id.as_deref().map(str::to_owned),
                    e.message.clone(),
                )
            })
            .collect();
        assert_eq!(decoded, expected);

        // Through the store, both query paths hand the id back.
        let (_d, store) = store();
        store.append_log_events(G, S, &events).unwrap();
        let ids = |page: &LogEventsPage| -> Vec<Option<String>> {
            page.events.iter().map(|e| e.request_id.clone()).collect()
        };
        let want: Vec<Option<String>> = events
            .iter()
            .map(|e| e.request_id.as_deref().map(str::to_owned))
            .collect();
        assert_eq!(ids(&get(&store, None, true, 100)), want, "forward");
        assert_eq!(ids(&get(&store, None, false, 100)), want, "backward");
        let filtered: Vec<Option<String>> = filter(&store, fq(""))
            .into_iter()
            .map(|e| e.request_id)
            .collect();
        assert_eq!(filtered, want, "filter");
    }

    #[test]
    fn refuses_request_ids_that_do_not_fit_the_encoding() {
        let (_d, store) = store();
        for bad in [String::new(), "r".repeat(REQUEST_ID_MAX_BYTES + 1)] {
            let err = store
                .append_log_events(G, S, &[ev(1, "ok"), ev_in(2, &bad, "bad")])
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidParameter { .. }), "{err}");
        }
        // Nothing of a refused batch was stored.
        assert!(matches!(
            store.get_log_events(&GetLogEventsQuery {
                group: G.into(),
                stream: S.into(),
                ..Default::default()
            }),
            Err(StoreError::LogGroupNotFound { .. })
        ));
    }

    #[test]
    fn malformed_chunk_blobs_are_corrupt_not_a_panic() {
        let good = encode_events(&[
            ev_in(1, "c0ffee00-1234-4567-89ab-000000000001", "hello"),
            ev(2, "world"),
        ]);
        // Every truncation of a valid blob (except at an event boundary) is refused.
        let boundary = EVENT_HEADER_BYTES + 36 + 5;
        for cut in 1..good.len() {
            let result = decode_events(1, &good[..cut], |_, _| true);
            if cut == boundary {
                assert!(result.is_ok(), "cut at the event boundary");
            } else {
                assert!(
                    matches!(result, Err(StoreError::Corrupt { .. })),
                    "cut at {cut}"
                );
            }
        }
        let mut long_id = good.clone();
        long_id[8] = (REQUEST_ID_MAX_BYTES + 1) as u8;
        let mut bad_utf8_id = good.clone();
        bad_utf8_id[9] = 0xff;
        let mut bad_utf8_message = good.clone();
        bad_utf8_message[EVENT_HEADER_BYTES + 36] = 0xff;
        let mut huge_len = good.clone();
        huge_len[9 + 36..13 + 36].copy_from_slice(&u32::MAX.to_le_bytes());
        for (what, blob) in [
            ("long id", long_id),
            ("id not utf-8", bad_utf8_id),
            ("message not utf-8", bad_utf8_message),
            ("length past the end", huge_len),
        ] {
            assert!(
                matches!(
                    decode_events(1, &blob, |_, _| true),
                    Err(StoreError::Corrupt { .. })
                ),
                "{what}"
            );
        }

        // A corrupt row surfaces from the queries as Corrupt, too.
        let (_d, store) = store();
        store.append_log_events(G, S, &[ev(1, "fine")]).unwrap();
        store
            .writer()
            .conn
            .execute("UPDATE log_chunks SET data = x'0102'", [])
            .unwrap();
        let q = GetLogEventsQuery {
            group: G.into(),
            stream: S.into(),
            start_from_head: true,
            ..Default::default()
        };
        assert!(matches!(
            store.get_log_events(&q),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            store.filter_log_events(&fq("")),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn filtering_by_request_id_returns_the_invocations_printed_lines() {
        let (_d, store) = store();
        let (r1, r2) = (
            "c0ffee00-1234-4567-89ab-000000000001",
            "c0ffee00-1234-4567-89ab-000000000002",
        );
        store
            .append_log_events(
                G,
                S,
                &[
                    ev_in(1, r1, "init output"),
                    ev_in(2, r1, &format!("START RequestId: {r1} Version: $LATEST")),
                    ev_in(3, r1, "printed one"),
                    ev_in(4, r1, &format!("END RequestId: {r1}")),
                    ev(5, "background thread"),
                    ev_in(6, r2, &format!("START RequestId: {r2} Version: $LATEST")),
                    ev_in(7, r2, "printed two"),
                    // A line that names r1 textually matches too, as on CloudWatch.
                    ev_in(8, r2, &format!("finished after {r1}")),
                ],
            )
            .unwrap();
        let found = filter(&store, fq(r1));
        let messages: Vec<&str> = found.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "init output".to_owned(),
                format!("START RequestId: {r1} Version: $LATEST"),
                "printed one".to_owned(),
                format!("END RequestId: {r1}"),
                format!("finished after {r1}"),
            ]
        );
        assert!(found[..4]
            .iter()
            .all(|e| e.request_id.as_deref() == Some(r1)));
        assert_eq!(found[4].request_id.as_deref(), Some(r2));
        let printed = filter(&store, fq(&format!("{r2} printed")));
        assert_eq!(printed.len(), 1);
        assert_eq!(printed[0].message, "printed two");
        assert_eq!(printed[0].request_id.as_deref(), Some(r2));
    }

    /// Prints append throughput; never asserts on time (run with `--nocapture` to see it).
    #[test]
    fn bench_append_100k_events_in_batches_of_500() {
        let (_d, store) = store();
        let events: Vec<LogEvent> = (0..100_000)
            .map(|i| ev(1_700_000_000_000 + i, &format!("2026-11-24T10:00:00.000Z\tc0ffee00-1234-4567-89ab-{i:012}\tINFO\tprocessed item {i} of the batch with some payload")))
            .collect();
        let started = std::time::Instant::now();
        for batch in events.chunks(500) {
            store.append_log_events(G, S, batch).unwrap();
        }
        let elapsed = started.elapsed();
        println!(
            "append: 100000 events in batches of 500 in {:.3}s = {:.0} events/s",
            elapsed.as_secs_f64(),
            100_000.0 / elapsed.as_secs_f64()
        );
        let started = std::time::Instant::now();
        let mut q = fq("\"item 99999 \"");
        q.limit = Some(10);
        let found = store.filter_log_events(&q).unwrap();
        println!(
            "filter: scanned 100000 events in {:.3}s",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(found.events.len(), 1);
    }
}
