//! What the daemon counts, and the status records that report it: at start (with the hooks that
//! attached), every `--status-interval`, and at exit.

use std::collections::BTreeMap;

use monitor_common::ErrorSlot;

use crate::{
    iplist::{self, FileReport, Outcome},
    probes::{Counters, NetsUpdate},
    record::{
        AttachReport, DedupStatus, EventCounts, ListStatus, OutputStatus, ProgramRuns, ReloadInfo,
        RuleId, Status, StatusRecord, TableStats,
    },
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
    /// Alerts printed, by rule.
    pub alerts_by_rule: BTreeMap<&'static str, u64>,
    /// The list files as last read.
    pub lists: Vec<ListStatus>,
    /// The kernel's prefix watch after the last update.
    pub nets: NetsUpdate,
    /// List reloads that changed or refused something.
    pub reloads: u64,
    /// SIGHUP reloads taken and refused.
    pub policy_reloads: u64,
    pub policy_reloads_refused: u64,
    /// The eBPF programs' run statistics as last read (`None` unless `kernel.bpf_stats_enabled`).
    pub programs: Option<BTreeMap<String, ProgramRuns>>,
}

/// What the rest of the daemon knows at the moment of a status record.
pub struct Now<'a> {
    pub time: String,
    pub host: &'a str,
    pub kernel: &'a Counters,
    pub table: TableStats,
    pub dedup: DedupStatus,
    pub ssh_sessions: usize,
    pub output: OutputStatus,
    /// reloaded only: what the reload did.
    pub reload: Option<ReloadInfo>,
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
            alerts_by_rule: self.alerts_by_rule.clone(),
            dedup: now.dedup,
            ssh_sessions: now.ssh_sessions,
            list_reloads: self.reloads,
            policy_reloads: self.policy_reloads,
            policy_reloads_refused: self.policy_reloads_refused,
            reload: now.reload,
            rss_bytes: rss_bytes(),
            output: now.output,
            lists: self.lists.clone(),
            watched_prefixes: self.nets.watched,
            watched_prefixes_overflow: self.nets.overflow,
            pre_existing_listeners,
            programs: self.programs.clone(),
        }
    }

    /// Counts an alert printed.
    pub fn alert(&mut self, rule: RuleId) {
        self.alerts += 1;
        *self.alerts_by_rule.entry(rule.as_str()).or_default() += 1;
    }

    /// Takes in a load or reload of the list files (at `time`); returns whether anything but
    /// "unchanged" happened, which is worth a `reloaded` status record.
    pub fn lists_read(&mut self, report: &iplist::ReloadReport, time: &str) -> bool {
        let mut news = false;
        let previous = std::mem::take(&mut self.lists);
        for file in &report.files {
            let source = source_name(file);
            let kept = previous.iter().find(|l| l.source == source);
            let (last, error) = match &file.outcome {
                Outcome::Loaded => ("loaded", None),
                Outcome::Reloaded => ("reloaded", None),
                Outcome::Unchanged => ("unchanged", None),
                Outcome::KeptLastGood(reason) => ("kept_last_good", Some(reason.to_string())),
            };
            news |= !matches!(file.outcome, Outcome::Unchanged);
            let unchanged = matches!(file.outcome, Outcome::Unchanged);
            self.lists.push(ListStatus {
                source,
                path: file.path.display().to_string(),
                entries: file.entries,
                bad_lines: match kept {
                    Some(k) if unchanged => k.bad_lines,
                    _ => file.bad_lines.count(),
                },
                last: match kept {
                    Some(k) if unchanged => k.last,
                    _ => last,
                },
                error: match kept {
                    Some(k) if unchanged => k.error.clone(),
                    _ => error,
                },
                read_at: match kept {
                    Some(k) if unchanged => k.read_at.clone(),
                    _ => time.to_owned(),
                },
            });
        }
        news
    }
}

/// The daemon's resident set size (`/proc/self/statm`'s second field, in pages), 0 when unknown.
pub fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// The status name of a list file's source (`tor_exits`, `reputation`, `list:<name>`).
pub fn source_name(file: &FileReport) -> String {
    match &file.source {
        iplist::Source::TorExits => "tor_exits".to_owned(),
        iplist::Source::Reputation => "reputation".to_owned(),
        iplist::Source::List(name) => format!("list:{name}"),
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
                ("accept", 15),
                ("cred", 16),
                ("pam", 17),
                ("decode", 7),
            ])
        );
        assert_eq!(ErrorSlot::Exec as u32, 2, "the wire numbering is fixed");
    }

    #[test]
    fn rss_is_read_and_alerts_are_counted_by_rule() {
        // Some megabytes: the test binary itself.
        assert!(rss_bytes() > 1 << 20, "{}", rss_bytes());
        let mut board = Board::default();
        board.alert(RuleId::UnexpectedListen);
        board.alert(RuleId::UnexpectedListen);
        board.alert(RuleId::WebserverShell);
        assert_eq!(board.alerts, 3);
        assert_eq!(
            board.alerts_by_rule,
            BTreeMap::from([("unexpected_listen", 2), ("webserver_shell", 1)])
        );
    }
}
