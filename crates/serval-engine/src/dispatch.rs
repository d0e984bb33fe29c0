//! The asynchronous dispatcher: runs events from the durable queue through the engine.
//!
//! STUB — being written; see the contract in `Engine::start_async` and `Engine::enqueue`.

use serval_model::RequestId;
use serval_store::{EventQueue, QueuedEvent};

use crate::{AsyncConfig, AsyncInvokeRequest, Engine, EnqueueError};

/// The engine's side of a running dispatcher.
pub(crate) struct DispatcherHandle {}

impl DispatcherHandle {
    /// Stops starting events, waits (bounded) for running ones to finish and record their
    /// outcome, and flushes the queue. Queued events stay on disk for the next start.
    pub(crate) async fn shutdown(&self) {
        todo!()
    }
}

impl Engine {
    /// Starts running asynchronous events: `leftovers` (what `EventQueue::open` returned)
    /// first, then whatever `enqueue` accepts. Call once, after every function, version,
    /// alias and setting is registered.
    pub fn start_async(&self, queue: EventQueue, leftovers: Vec<QueuedEvent>, config: AsyncConfig) {
        todo!("{:?}{}{config:?}", queue.held(), leftovers.len())
    }

    /// Accepts one asynchronous invocation: checks the function and qualifier exist, stores
    /// the event durably, and hands it to the dispatcher. Returns the request id the event
    /// runs under once it is on disk.
    pub async fn enqueue(&self, req: AsyncInvokeRequest) -> Result<RequestId, EnqueueError> {
        todo!("{req:?}")
    }
}
