//! What the daemon counts, and the status records that report it: at start (with the hooks that
//! attached), every `--status-interval`, and at exit.

use std::collections::BTreeMap;

use monitor_common::ErrorSlot;

use crate::{
    probes::Counters,
    record::{AttachReport, DedupStatus, EventCounts, Status, StatusRecord, TableStats},
};

/// The daemon's own counts and the facts fixed at start.
#[derive(Clone, Debug, Default)]
pub struct Board {
    pub hooks: AttachReport,
    pub ring_buffer_bytes: u32,
    /// `"embedded default"` or the policy file's path.
    pub policy_source: String,
    pub events: EventCounts,
    /// Ring-buffer records userspace could not decode.
    pub decode_errors: u64,
    /// Alerts printed.
    pub alerts: u64,
}

/// What the rest of the daemon knows at the moment of a status record.
pub struct Now<'a> {
    pub time: String,
    pub host: &'a str,
    pub kernel: &'a Counters,
    pub table: TableStats,
    pub dedup: DedupStatus,
}

impl Board {
    pub fn record(
        &self,
        status: Status,
        now: Now<'_>,
        pre_existing_listeners: Option<usize>,
    ) -> StatusRecord {
        StatusRecord {
            status,
            time: now.time,
            host: now.host.to_owned(),
            version: env!("CARGO_PKG_VERSION"),
            hooks: self.hooks.clone(),
            ring_buffer_bytes: self.ring_buffer_bytes,
            policy: self.policy_source.clone(),
            events: self.events,
            drops: now.kernel.drops,
            errors: errors(now.kernel, self.decode_errors),
            process_table: now.table,
            alerts: self.alerts,
            dedup: now.dedup,
            pre_existing_listeners,
        }
    }
}

/// The `errors` object: the kernel's failures by program area, named by their wire slot, and
/// `decode` for what userspace could not decode.
fn errors(kernel: &Counters, decode_errors: u64) -> BTreeMap<&'static str, u64> {
    let mut errors: BTreeMap<&'static str, u64> = ErrorSlot::ALL
        .iter()
        .map(|&slot| (slot.name(), kernel.errors[slot as usize]))
        .collect();
    errors.insert("decode", decode_errors);
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_error_counts_are_keyed_by_their_wire_slot() {
        let mut kernel = Counters::default();
        for slot in ErrorSlot::ALL {
            // A distinct count per slot: a name pointing at another slot's count shows.
            kernel.errors[slot as usize] = 10 + slot as u64;
        }
        let got = errors(&kernel, 7);
        assert_eq!(
            got,
            BTreeMap::from([
                ("listen", 10),
                ("connect", 11),
                ("exec", 12),
                ("fork", 13),
                ("exit", 14),
                ("decode", 7),
            ])
        );
        assert_eq!(ErrorSlot::Exec as u32, 2, "the wire numbering is fixed");
    }
}
