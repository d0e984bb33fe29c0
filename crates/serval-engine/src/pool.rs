//! The environments of one function configuration: idle ones ready for reuse, and retirement
//! when the configuration changes.
//!
//! The pool is reached through its handle only; its idle list sits behind a std mutex held for a
//! push or a pop, never across an await. Idle environments are reused last-in first-out, so a
//! steady trickle keeps one environment hot and lets the rest age out.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::environment::{Environment, FunctionSpec, ProvisionedMark};

/// One function configuration and its environments.
pub struct Pool {
    pub spec: Arc<FunctionSpec>,
    idle: Mutex<Vec<Environment>>,
    retired: AtomicBool,
    /// Provisioned concurrency: how many initialized environments to keep.
    pub provisioned_target: AtomicU32,
    /// Live environments (idle or busy) counted toward the target.
    pub provisioned_live: Arc<AtomicU32>,
    /// Provisioned environments being created now.
    pub provisioning: AtomicU32,
    /// The last provisioned init failure and when it happened, cleared by a success.
    pub provisioned_failure: Mutex<Option<(Instant, String)>>,
}

impl Pool {
    pub fn new(spec: FunctionSpec) -> Self {
        Self {
            spec: Arc::new(spec),
            idle: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
            provisioned_target: AtomicU32::new(0),
            provisioned_live: Arc::new(AtomicU32::new(0)),
            provisioning: AtomicU32::new(0),
            provisioned_failure: Mutex::new(None),
        }
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// A mark counting one environment toward this pool's provisioned concurrency.
    pub fn provisioned_mark(&self) -> ProvisionedMark {
        ProvisionedMark::new(self.provisioned_live.clone())
    }

    /// Unmarks idle provisioned environments beyond the target, so they age out as usual.
    pub fn trim_provisioned(&self) {
        let target = self.provisioned_target.load(Ordering::Acquire);
        let mut idle = self.lock();
        for env in idle.iter_mut() {
            if self.provisioned_live.load(Ordering::Acquire) <= target {
                break;
            }
            if env.is_provisioned() {
                env.unmark_provisioned();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Environment>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used live idle environment, if any.
    /// A frozen one is thawed outside the lock.
    pub fn acquire(&self) -> Option<Environment> {
        loop {
            let mut env = {
                let mut idle = self.lock();
                loop {
                    let env = idle.pop()?;
                    if env.is_alive() {
                        break env;
                    }
                }
            };
            if env.thaw() {
                return Some(env);
            }
        }
    }

    /// Returns an environment after an invocation; a retired pool destroys it instead.
    pub fn release(&self, env: Environment) {
        if self.retired.load(Ordering::Acquire) || !env.is_alive() {
            return;
        }
        let mut idle = self.lock();
        // Checked again under the lock so `retire` cannot miss it.
        if self.retired.load(Ordering::Acquire) {
            drop(idle);
            return;
        }
        idle.push(env);
    }

    /// Stops accepting environments and destroys the idle ones; in-flight ones finish and are
    /// destroyed on release.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.lock());
        drop(idle);
    }

    /// Destroys idle environments last used before `cutoff` (provisioned ones excepted) or
    /// already dead.
    pub fn reap(&self, cutoff: Instant) -> usize {
        let mut idle = self.lock();
        let before = idle.len();
        idle.retain(|env| (env.last_used >= cutoff || env.is_provisioned()) && env.is_alive());
        before - idle.len()
    }

    /// Freezes idle environments last used before `cutoff`; returns how many it froze.
    pub fn freeze_idle(&self, cutoff: Instant) -> usize {
        let mut idle = self.lock();
        let mut frozen = 0;
        for env in idle.iter_mut() {
            if !env.is_frozen() && env.last_used < cutoff && env.is_alive() {
                env.freeze();
                frozen += usize::from(env.is_frozen());
            }
        }
        frozen
    }

    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }
}
