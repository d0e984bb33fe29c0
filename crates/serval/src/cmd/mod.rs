//! The user commands (`deploy`, `invoke`, `functions`, `logs`): argument types and what each
//! does, as a client of the server's public AWS API.
//!
//! Not for: the server itself (`server.rs`) or the benchmark (`bench.rs`).

pub mod deploy;
pub mod functions;
pub mod invoke;
pub mod logs;

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A mistake in how a command was called that clap cannot see (a payload that is not JSON, an
/// unreadable `@file`). Exits with status 2, like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A spinner on stderr, shown only when stderr is a terminal.
pub struct Spinner(ProgressBar);

impl Spinner {
    /// Starts a spinner with `message` (hidden when stderr is not a TTY).
    pub fn start(message: impl Into<String>) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("the spinner template is valid"),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(message.into());
        Self(bar)
    }

    /// Changes the message.
    pub fn set(&self, message: impl Into<String>) {
        self.0.set_message(message.into());
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
