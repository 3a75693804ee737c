//! Status records: at start (with the hooks that attached), every `--status-interval`, and at
//! exit, with what the daemon has counted.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{EventType, Record};

/// Records dropped because the output queue was full (or its reader gone, with
/// `--on-output-closed=continue`), by kind: events by their `event`, then alerts and status
/// records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutputDrops {
    pub listen: u64,
    pub connect: u64,
    pub accept: u64,
    pub exec: u64,
    pub exit: u64,
    pub login: u64,
    pub alert: u64,
    pub status: u64,
}

impl OutputDrops {
    /// Counts one dropped record.
    pub fn count(&mut self, record: &Record) {
        let n = match record {
            Record::Event(e) => match e.event {
                EventType::Listen => &mut self.listen,
                EventType::Connect => &mut self.connect,
                EventType::Accept => &mut self.accept,
                EventType::Exec => &mut self.exec,
                EventType::Exit => &mut self.exit,
                EventType::Login => &mut self.login,
            },
            Record::Alert(_) => &mut self.alert,
            Record::Status(_) => &mut self.status,
        };
        *n += 1;
    }

    /// Every drop, whatever its kind.
    pub fn total(&self) -> u64 {
        self.listen
            + self.connect
            + self.accept
            + self.exec
            + self.exit
            + self.login
            + self.alert
            + self.status
    }

    /// `(kind, count)` for each kind, in the record's order.
    pub fn by_kind(&self) -> [(&'static str, u64); 8] {
        [
            ("listen", self.listen),
            ("connect", self.connect),
            ("accept", self.accept),
            ("exec", self.exec),
            ("exit", self.exit),
            ("login", self.login),
            ("alert", self.alert),
            ("status", self.status),
        ]
    }
}

/// The output queue (`--output` or stdout) and what it had to drop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutputStatus {
    /// `stdout` or the `--output` file.
    pub target: String,
    /// Bytes waiting for the reader now.
    pub queued_bytes: usize,
    /// `--output-queue-bytes`: events are dropped once half of it is queued, alerts at seven
    /// eighths, status records at the whole.
    pub queue_bytes: usize,
    /// Records dropped since start, by kind.
    pub dropped: OutputDrops,
    /// The reader went away (`--on-output-closed=continue` kept the daemon running).
    #[serde(skip_serializing_if = "crate::record::is_false")]
    pub closed: bool,
}

/// What a `reloaded` record reports: what triggered it, whether the new configuration was
/// taken, and what changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReloadInfo {
    /// `sighup` (the policy and the list files), or `list_file` (a list file changed on disk).
    pub trigger: &'static str,
    /// The new configuration is in use; `false`: it was refused and the old one keeps running.
    pub accepted: bool,
    /// The policy's keys whose values changed (`rules.<rule>` for a rule's section), and the
    /// list files re-read (`enrichment.<source>`).
    pub changed: Vec<String>,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ReloadError>,
}

/// A refused reload: the file, and where in it and which key, when known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReloadError {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The whole message, as logged (`FILE:LINE:COLUMN: KEY: MESSAGE`).
    pub message: String,
}

/// Which status record this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Started,
    Running,
    /// SIGHUP re-read the policy and the list files, or a list file changed and was re-read,
    /// or a re-read was refused (`reload` and `lists` say which).
    Reloaded,
    Stopped,
}

/// `{"type":"status", ...}` (the tag is [`super::Record`]'s).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusRecord {
    pub status: Status,
    pub time: String,
    pub host: String,
    pub version: &'static str,
    pub hooks: AttachReport,
    pub ring_buffer_bytes: u32,
    /// `"embedded default"` or the policy file's path.
    pub policy: String,
    pub events: EventCounts,
    /// Kernel ring-buffer drops since start.
    pub drops: u64,
    /// Failures inside the eBPF programs by area (`monitor_common::ErrorSlot` names), and
    /// `decode` for records userspace could not decode.
    pub errors: BTreeMap<&'static str, u64>,
    pub process_table: TableStats,
    /// Alerts printed since start.
    pub alerts: u64,
    /// Alerts printed since start, by rule (rules that raised none are left out).
    pub alerts_by_rule: BTreeMap<&'static str, u64>,
    pub dedup: DedupStatus,
    /// SSH sessions being followed until they become logins or end.
    pub ssh_sessions: usize,
    /// List reloads that re-read or refused a file.
    pub list_reloads: u64,
    /// SIGHUP reloads taken, and refused (the old policy kept running).
    pub policy_reloads: u64,
    pub policy_reloads_refused: u64,
    /// reloaded only: what the reload did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadInfo>,
    /// The daemon's resident memory (`/proc/self/statm`), in bytes.
    pub rss_bytes: u64,
    pub output: OutputStatus,
    /// The `[enrichment]` list files, as last read (absent without lists).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lists: Vec<ListStatus>,
    /// Prefixes the kernel watches for inbound connections, and whether the lists outgrew it
    /// (every accept is then sent to userspace).
    pub watched_prefixes: usize,
    #[serde(skip_serializing_if = "crate::record::is_false")]
    pub watched_prefixes_overflow: bool,
    /// started only: sockets found listening by the start-up scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_existing_listeners: Option<usize>,
    /// What each eBPF program has cost the kernel since it was loaded, by program name; only
    /// while `kernel.bpf_stats_enabled` is 1 (the kernel counts nothing otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub programs: Option<BTreeMap<String, ProgramRuns>>,
}

/// One eBPF program's run statistics, as the kernel keeps them (`run_cnt`, `run_time_ns` in the
/// program's fdinfo).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProgramRuns {
    /// The kernel's id for the program (`bpftool prog show id N`).
    pub id: u32,
    pub runs: u64,
    pub run_time_ns: u64,
}

/// Kernel events handled, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventCounts {
    pub listen: u64,
    pub connect: u64,
    pub accept: u64,
    pub exec: u64,
    pub fork: u64,
    pub exit: u64,
    /// Real-uid changes (setuid family).
    pub cred: u64,
    /// Processes becoming session leaders.
    pub setsid: u64,
    /// libpam results from SSH servers.
    pub pam: u64,
    /// Logins recognised.
    pub login: u64,
}

/// One attach attempt that did not take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// e.g. `fentry:inet_listen`.
    pub hook: String,
    pub error: String,
}

/// Outcome for one logical hook (`listen`, `connect`, `exec`, `fork`, `exit`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HookStatus {
    /// The hook that took, e.g. `tracepoint:sock:inet_sock_set_state`; `null` when none did.
    pub attached: Option<String>,
    pub refused: Vec<Refusal>,
}

/// Keyed by logical hook name; the `hooks` object of the status record.
pub type AttachReport = BTreeMap<String, HookStatus>;

/// The process table's size and bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TableStats {
    pub size: usize,
    pub capacity: usize,
    pub evicted: u64,
}

/// One list file of `[enrichment]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListStatus {
    /// `tor_exits`, `reputation`, or `list:<name>`.
    pub source: String,
    pub path: String,
    /// Entries served now.
    pub entries: usize,
    /// Malformed lines skipped the last time it was read.
    pub bad_lines: usize,
    /// `loaded`, `reloaded`, `unchanged` or `kept_last_good`.
    pub last: &'static str,
    /// Why the last re-read was refused (the last good copy is served).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was last read (RFC 3339).
    pub read_at: String,
}

/// Dedup accounting (fields in this order: the record's keys are sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DedupStatus {
    /// The keys owing the most held-back repeats (at most 32), with their counts.
    pub suppressed_by_key: BTreeMap<String, u64>,
    /// Held back and not yet reported on an alert.
    pub suppressed_pending: u64,
    /// Held back since start.
    pub suppressed_total: u64,
}
