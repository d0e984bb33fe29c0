//! Scheduled EventBridge rules (`rules`) and their targets (`rule_targets`).
