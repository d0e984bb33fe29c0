//! Log capture: a runtime's output, line by line, into the log store.
//!
//! Each environment's stdout and stderr share one pipe. A [`LogCapture`] reads it (a reader task
//! while idle, and synchronously right after a result arrives, so every line written before the
//! runtime posted its result is attributed to that invocation), frames invocations with Serval's
//! `START`/`END`/`REPORT` lines, and keeps the last 4 KB for `LogType: Tail` when asked. Lines go
//! to one [`LogWriter`] thread that appends them to the store in batches.
//!
//! Every line carries the request id of the invocation running when it was read
//! ([`LogCapture::begin_invocation`] to [`LogCapture::end_invocation`], init of a cold start
//! included); lines read between invocations (a background thread's) carry none. The id is one
//! shared `Arc<str>` per invocation, so tagging a line costs a reference count, not a copy. Everything is bounded:
//! a line is cut at 256 KB, and when the writer falls behind, lines are dropped and counted
//! rather than queued without end.
//!
//! Not for: Serval's own log (that is `tracing`), or querying logs (the store does that).

use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serval_model::limits::LOG_TAIL_MAX_BYTES;
use serval_model::RequestId;
use std::collections::HashMap;

use serval_store::{LogEvent, Store, StreamEvents};
use std::os::fd::AsFd;
use tokio::net::unix::pipe;

/// Longest single log event (CloudWatch's limit is 256 KB).
const MAX_LINE_BYTES: usize = 256 * 1024;
/// Lines buffered between the engine and the writer thread before new ones are dropped.
const WRITER_QUEUE_LINES: usize = 64 * 1024;
/// Bytes of log text buffered between the engine and the writer before new lines are dropped.
const WRITER_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// Most bytes one drain reads before letting other work run; the rest is read next time.
const DRAIN_BUDGET_BYTES: usize = 1024 * 1024;
/// Most lines the writer appends in one store call.
const WRITER_BATCH_LINES: usize = 4096;
/// Longest a line waits in the writer before it is appended.
const WRITER_FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// How often the writer applies the retention period.
const RETENTION_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// A log group and stream pair (`/aws/lambda/<name>`, `2026/11/24/[$LATEST]<hex>`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StreamId {
    pub group: String,
    pub stream: String,
}

/// A message for the writer thread.
enum WriterMsg {
    Line {
        stream: Arc<StreamId>,
        event: LogEvent,
    },
    Flush(mpsc::Sender<()>),
}

/// The sending side of the log writer thread; cloneable.
#[derive(Clone)]
pub struct LogWriter {
    tx: SyncSender<WriterMsg>,
    dropped: Arc<AtomicU64>,
    /// Bytes of message text sent but not yet stored.
    queued_bytes: Arc<AtomicUsize>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl LogWriter {
    /// Starts the writer thread appending to `store`, deleting events older than `retention`.
    pub fn start(store: Store, retention: Duration) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(WRITER_QUEUE_LINES);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let queued = queued_bytes.clone();
        std::thread::Builder::new()
            .name("serval-logs".into())
            .spawn(move || writer_loop(store, retention, rx, queued))?;
        Ok(Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            queued_bytes,
        })
    }

    fn send(
        &self,
        stream: &Arc<StreamId>,
        timestamp_ms: i64,
        request_id: Option<Arc<str>>,
        message: String,
    ) {
        let len = message.len();
        if self.queued_bytes.fetch_add(len, Ordering::AcqRel) + len > WRITER_QUEUE_BYTES {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.count_dropped();
            return;
        }
        let msg = WriterMsg::Line {
            stream: stream.clone(),
            event: LogEvent {
                timestamp_ms,
                message,
                request_id,
            },
        };
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                self.count_dropped();
            }
        }
    }

    fn count_dropped(&self) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed);
        if n.is_power_of_two() {
            tracing::warn!(
                dropped = n + 1,
                "log writer is behind; dropping function log lines"
            );
        }
    }

    /// Waits (blocking) until every line sent so far is in the store.
    pub fn flush_blocking(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(WriterMsg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
    }
}

fn writer_loop(
    store: Store,
    retention: Duration,
    rx: mpsc::Receiver<WriterMsg>,
    queued_bytes: Arc<AtomicUsize>,
) {
    let mut batch: Vec<(Arc<StreamId>, LogEvent)> = Vec::with_capacity(WRITER_BATCH_LINES);
    let mut waiters: Vec<mpsc::Sender<()>> = Vec::new();
    let mut last_sweep: Option<Instant> = None;
    loop {
        // Block only while there is nothing to do, and never past the next retention sweep.
        let until_sweep = last_sweep.map_or(Duration::ZERO, |t: Instant| {
            RETENTION_SWEEP_INTERVAL.saturating_sub(t.elapsed())
        });
        let mut msg = match rx.recv_timeout(until_sweep) {
            Ok(first) => Some(first),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        if matches!(msg, Some(WriterMsg::Line { .. })) {
            // Let lines accumulate without being woken for each one: a receiver that is not
            // parked on the channel costs its senders no wake-up.
            std::thread::sleep(WRITER_FLUSH_INTERVAL);
        }
        loop {
            while batch.len() < WRITER_BATCH_LINES {
                match msg.take().map_or_else(|| rx.try_recv().ok(), Some) {
                    Some(WriterMsg::Line { stream, event }) => batch.push((stream, event)),
                    Some(WriterMsg::Flush(w)) => waiters.push(w),
                    None => break,
                }
            }
            let full = batch.len() >= WRITER_BATCH_LINES;
            let bytes: usize = batch.iter().map(|(_, e)| e.message.len()).sum();
            append(&store, &mut batch);
            queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            if !full {
                break;
            }
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
        if last_sweep.is_none_or(|t| t.elapsed() >= RETENTION_SWEEP_INTERVAL) {
            last_sweep = Some(Instant::now());
            // A group's own retention policy wins over the server's default.
            let default_days = retention
                .as_secs()
                .div_ceil(86_400)
                .min(u64::from(u32::MAX)) as u32;
            if let Err(error) = store.apply_log_retention(now_ms(), default_days) {
                tracing::warn!(error = %error, "failed to apply log retention");
            }
        }
    }
}

fn append(store: &Store, batch: &mut Vec<(Arc<StreamId>, LogEvent)>) {
    if batch.is_empty() {
        return;
    }
    // Group by stream, keeping each stream's order; one store transaction for the whole batch.
    let mut streams: Vec<(Arc<StreamId>, Vec<LogEvent>)> = Vec::new();
    let mut index: HashMap<*const StreamId, usize> = HashMap::new();
    for (stream, event) in batch.drain(..) {
        let slot = *index.entry(Arc::as_ptr(&stream)).or_insert_with(|| {
            streams.push((stream.clone(), Vec::new()));
            streams.len() - 1
        });
        streams[slot].1.push(event);
    }
    let parts: Vec<StreamEvents<'_>> = streams
        .iter()
        .map(|(s, events)| StreamEvents {
            group: &s.group,
            stream: &s.stream,
            events,
        })
        .collect();
    if let Err(error) = store.append_log_batch(&parts) {
        tracing::error!(error = %error, streams = parts.len(), "failed to store function log lines");
    }
}

struct CaptureState {
    partial: Vec<u8>,
    tail: Option<Vec<u8>>,
    closed: bool,
    /// The running invocation's request id, given to every line read while it is set.
    request_id: Option<Arc<str>>,
}

/// One environment's output pipe and where its lines go.
pub struct LogCapture {
    /// The read end, registered with tokio: the pump waits and reads through it.
    pipe: pipe::Receiver,
    /// The same open pipe (a duplicate descriptor, non-blocking too). A synchronous drain reads
    /// through it with a plain `read(2)`, because tokio's `try_read` trusts its cached readiness
    /// and may report "would block" without asking the kernel.
    direct: File,
    state: Mutex<CaptureState>,
    writer: LogWriter,
    pub stream: Arc<StreamId>,
}

impl LogCapture {
    pub fn new(pipe: pipe::Receiver, writer: LogWriter, stream: Arc<StreamId>) -> io::Result<Self> {
        let direct = File::from(pipe.as_fd().try_clone_to_owned()?);
        Ok(Self {
            pipe,
            direct,
            state: Mutex::new(CaptureState {
                partial: Vec::new(),
                tail: None,
                closed: false,
                request_id: None,
            }),
            writer,
            stream,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CaptureState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads everything the pipe holds right now. Returns false once the pipe is closed.
    pub fn drain(&self) -> bool {
        self.drain_with(|buf| (&self.direct).read(buf))
    }

    fn drain_with(&self, mut read: impl FnMut(&mut [u8]) -> io::Result<usize>) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        let mut buf = [0u8; 16 * 1024];
        let mut budget = DRAIN_BUDGET_BYTES;
        loop {
            if budget == 0 {
                return true;
            }
            match read(&mut buf) {
                Ok(0) => {
                    st.closed = true;
                    if !st.partial.is_empty() {
                        let line = std::mem::take(&mut st.partial);
                        self.emit(&mut st, &line);
                    }
                    return false;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.split(&mut st, &buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    st.closed = true;
                    return false;
                }
            }
        }
    }

    fn split(&self, st: &mut CaptureState, mut data: &[u8]) {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            if st.partial.is_empty() {
                self.emit(st, &data[..i]);
            } else {
                st.partial.extend_from_slice(&data[..i]);
                let line = std::mem::take(&mut st.partial);
                self.emit(st, &line);
            }
            data = &data[i + 1..];
        }
        st.partial.extend_from_slice(data);
        while st.partial.len() >= MAX_LINE_BYTES {
            let rest = st.partial.split_off(MAX_LINE_BYTES);
            let line = std::mem::replace(&mut st.partial, rest);
            self.emit(st, &line);
        }
    }

    fn emit(&self, st: &mut CaptureState, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(tail) = st.tail.as_mut() {
            push_tail(tail, line);
        }
        let message = String::from_utf8_lossy(line).into_owned();
        self.writer
            .send(&self.stream, now_ms(), st.request_id.clone(), message);
    }

    /// Records one of Serval's own lines (`START`, `END`, `REPORT`) in the stream, tagged with
    /// the running invocation's request id.
    pub fn system_line(&self, line: String) {
        let mut st = self.lock();
        if let Some(tail) = st.tail.as_mut() {
            push_tail(tail, line.as_bytes());
        }
        let request_id = st.request_id.clone();
        drop(st);
        self.writer.send(&self.stream, now_ms(), request_id, line);
    }

    /// Attributes every line read from now on (the runtime's and Serval's own) to
    /// `request_id`, until [`end_invocation`](Self::end_invocation). Called where an
    /// invocation starts, and already when a cold start begins, so that init output belongs
    /// to the request that caused it; calling it again with the same id keeps the tag.
    pub fn begin_invocation(&self, request_id: &RequestId) {
        let mut st = self.lock();
        if st.request_id.as_deref() != Some(request_id.as_str()) {
            st.request_id = Some(Arc::from(request_id.as_str()));
        }
    }

    /// Lines read from now on belong to no invocation (until the next `begin_invocation`).
    /// Called after the invocation's `END` and `REPORT` lines.
    pub fn end_invocation(&self) {
        self.lock().request_id = None;
    }

    /// Starts keeping the invocation's last 4 KB for `LogType: Tail`.
    pub fn start_tail(&self) {
        self.lock().tail = Some(Vec::with_capacity(LOG_TAIL_MAX_BYTES));
    }

    /// The kept tail, if one was started.
    pub fn take_tail(&self) -> Option<Vec<u8>> {
        let mut tail = self.lock().tail.take()?;
        if tail.len() > LOG_TAIL_MAX_BYTES {
            tail.drain(..tail.len() - LOG_TAIL_MAX_BYTES);
        }
        Some(tail)
    }

    /// Waits until the pipe may have data, reads it all; false once the pipe is closed.
    async fn pump_once(&self) -> bool {
        if self.pipe.readable().await.is_err() {
            return false;
        }
        // Reading through tokio clears its readiness once the pipe is empty.
        let open = self.drain_with(|buf| self.pipe.try_read(buf));
        // A function printing without pause must not hold this worker thread.
        tokio::task::yield_now().await;
        open
    }
}

fn push_tail(tail: &mut Vec<u8>, line: &[u8]) {
    tail.extend_from_slice(line);
    tail.push(b'\n');
    if tail.len() > 2 * LOG_TAIL_MAX_BYTES {
        tail.drain(..tail.len() - LOG_TAIL_MAX_BYTES);
    }
}

/// Reads `capture` whenever the runtime writes, until its pipe closes.
pub async fn pump(capture: Arc<LogCapture>) {
    while capture.pump_once().await {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn capture(dir: &std::path::Path) -> (Arc<LogCapture>, std::io::PipeWriter, Store, LogWriter) {
        let store = Store::open(dir).unwrap();
        let writer = LogWriter::start(store.clone(), Duration::from_secs(86400)).unwrap();
        let (r, w) = std::io::pipe().unwrap();
        let rx = pipe::Receiver::from_owned_fd(r.into()).unwrap();
        let stream = Arc::new(StreamId {
            group: "/aws/lambda/f".into(),
            stream: "s".into(),
        });
        (
            Arc::new(LogCapture::new(rx, writer.clone(), stream).unwrap()),
            w,
            store,
            writer,
        )
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (cap, mut w, _store, _writer) = capture(dir.path());
        cap.start_tail();
        w.write_all(b"one\ntw").unwrap();
        assert!(cap.drain());
        w.write_all(b"o\r\nthree").unwrap();
        assert!(cap.drain());
        cap.system_line("END".into());
        drop(w);
        assert!(!cap.drain(), "closed pipe is reported");
        let tail = String::from_utf8(cap.take_tail().unwrap()).unwrap();
        assert_eq!(tail, "one\ntwo\nEND\nthree\n");
    }

    #[tokio::test]
    async fn tags_lines_with_the_running_invocations_request_id() {
        let dir = tempfile::tempdir().unwrap();
        let (cap, mut w, store, writer) = capture(dir.path());
        let (r1, r2) = (RequestId::new(), RequestId::new());
        // A cold start: init output belongs to the request that caused it.
        cap.begin_invocation(&r1);
        w.write_all(b"init\n").unwrap();
        assert!(cap.drain());
        cap.begin_invocation(&r1);
        cap.system_line(format!("START RequestId: {r1}"));
        w.write_all(b"handler one\n").unwrap();
        assert!(cap.drain());
        cap.system_line(format!("END RequestId: {r1}"));
        cap.end_invocation();
        w.write_all(b"background\n").unwrap();
        assert!(cap.drain());
        cap.begin_invocation(&r2);
        w.write_all(b"handler two\n").unwrap();
        assert!(cap.drain());
        cap.end_invocation();
        writer.flush_blocking();

        let page = store
            .get_log_events(&serval_store::GetLogEventsQuery {
                group: "/aws/lambda/f".into(),
                stream: "s".into(),
                start_from_head: true,
                ..Default::default()
            })
            .unwrap();
        let got: Vec<(String, Option<String>)> = page
            .events
            .into_iter()
            .map(|e| (e.message, e.request_id))
            .collect();
        let one = Some(r1.to_string());
        assert_eq!(
            got,
            [
                ("init".to_owned(), one.clone()),
                (format!("START RequestId: {r1}"), one.clone()),
                ("handler one".to_owned(), one.clone()),
                (format!("END RequestId: {r1}"), one),
                ("background".to_owned(), None),
                ("handler two".to_owned(), Some(r2.to_string())),
            ]
        );
    }

    #[tokio::test]
    async fn lines_of_one_invocation_share_one_request_id_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let (cap, _w, _store, _writer) = capture(dir.path());
        let id = RequestId::new();
        cap.begin_invocation(&id);
        let first = cap.lock().request_id.clone().unwrap();
        cap.begin_invocation(&id);
        let again = cap.lock().request_id.clone().unwrap();
        assert!(Arc::ptr_eq(&first, &again), "same id, same allocation");
        cap.end_invocation();
        assert!(cap.lock().request_id.is_none());
    }

    #[tokio::test]
    async fn tail_is_bounded_to_4kb() {
        let dir = tempfile::tempdir().unwrap();
        let (cap, mut w, _store, _writer) = capture(dir.path());
        cap.start_tail();
        for _ in 0..1000 {
            w.write_all(b"0123456789abcdef\n").unwrap();
        }
        cap.drain();
        assert_eq!(cap.take_tail().unwrap().len(), LOG_TAIL_MAX_BYTES);
    }

    #[tokio::test]
    async fn cuts_overlong_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (cap, mut w, _store, _writer) = capture(dir.path());
        let big = vec![b'x'; MAX_LINE_BYTES + 10];
        let writer_thread = std::thread::spawn(move || {
            w.write_all(&big).unwrap();
        });
        while !writer_thread.is_finished() {
            cap.drain();
        }
        cap.drain();
        assert!(cap.lock().partial.len() < MAX_LINE_BYTES);
    }
}
