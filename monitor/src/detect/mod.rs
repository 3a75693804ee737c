//! Detections. INTERFACE STUB written by the lead: the detections helper owns this file and may
//! extend it, but keeps these signatures (the daemon calls them).

use std::sync::Arc;

use crate::{policy::Policy, record::EventRecord};

/// An `{"type":"alert", ...}` record (the detections helper defines its fields per issue 3).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AlertRecord {}

/// Runs every rule of a policy over events, with dedup and `events_lost` accounting.
pub struct Detector {
    _policy: Arc<Policy>,
}

impl Detector {
    pub fn new(policy: Arc<Policy>) -> Self {
        Self { _policy: policy }
    }

    /// Judges one event (live, start-up baseline with `pre_existing`, or replayed).
    /// `drops_total` is the kernel's cumulative ring-buffer drop count at this moment; alerts
    /// carry the difference since the previous alert as `events_lost`.
    pub fn on_event(&mut self, _event: &EventRecord, _drops_total: u64) -> Vec<AlertRecord> {
        Vec::new()
    }

    /// For the status record: alerts suppressed by dedup and not yet reported on a later alert.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}
