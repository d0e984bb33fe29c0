//! Scheduled EventBridge rules: a task that fires each enabled rule's targets at the rule's
//! due times, through the engine's durable asynchronous queue.
//!
//! (Skeleton: filled in by the schedules work.)

use serval_engine::Engine;

/// Settings of the rule scheduler.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// The region in rule ARNs and events.
    pub region: String,
    /// How many times faster than real time the scheduler's clock runs (1 in production;
    /// tests speed it up so `rate(1 minute)` fires every second or so).
    pub clock_speed: u32,
}

/// Handle to the scheduler task; cheap to clone.
#[derive(Clone)]
pub struct Schedules {
    _engine: Engine,
}

impl Schedules {
    /// Starts the scheduler with no rules.
    pub fn start(engine: Engine, config: ScheduleConfig) -> Schedules {
        let _ = config;
        Schedules { _engine: engine }
    }
}
