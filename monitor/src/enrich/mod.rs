//! The enrich stage, between the process table and the rules: it turns a decoded kernel event
//! plus the table's state into an event record's context (the process, its ancestry, the
//! nearest web server), and gives the rules that record as a [`Context`] whose lineage verdicts
//! ([`lineage`]) are computed once, on first use.
//!
//! Live events come through [`Enricher::event`], the start-up baseline's listeners through
//! [`Enricher::pre_existing_listener`]; both build the record from the same pieces, so a socket
//! found at start-up reads exactly like one seen live. Replayed records already carry their
//! context and go straight to [`Context`].

mod context;
pub mod lineage;

pub use self::context::{Context, Programs};
use crate::{
    baseline::ListeningSocket,
    clock::Clock,
    decode::{self, Origin},
    host::UserNames,
    process_table::{ProcessEntry, ProcessTable},
    record::{Endpoint, EventRecord, EventType, Family, ProcessInfo},
};

/// Builds event records: host name, user names and wall-clock time on top of the table.
pub struct Enricher {
    host: String,
    users: UserNames,
    clock: Clock,
}

impl Enricher {
    pub fn new(host: String, users: UserNames, clock: Clock) -> Self {
        Self { host, users, clock }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Re-reads the wall-clock offset when it is due (the wall clock may have been stepped).
    pub fn resample_clock(&mut self) {
        self.clock.maybe_resample();
    }

    /// An event record for the process that caused `origin`: ids, comm and cgroup as the kernel
    /// reported them, executable and argv from the table, and its lineage.
    pub fn event(
        &mut self,
        table: &mut ProcessTable,
        event: EventType,
        origin: &Origin,
    ) -> EventRecord {
        let entry = table.for_event(origin);
        let process = self.process_info(entry, Some(origin));
        let time = self.clock.rfc3339(origin.ktime_ns);
        self.with_lineage(table, event, time, process)
    }

    /// A `listen` record with `pre_existing` for a socket the start-up scan found, at wall-clock
    /// `time`. A listener no visible process owns (a process in another PID namespace, or one
    /// whose /proc entries we may not read) is still reported, with pid 0 and the socket
    /// creator's uid: an open port nobody can account for is what the baseline is for.
    pub fn pre_existing_listener(
        &mut self,
        table: &mut ProcessTable,
        socket: &ListeningSocket,
        time: &str,
    ) -> EventRecord {
        let owner = main_owner(&socket.owners, table);
        let process = if let Some(entry) = owner.and_then(|pid| table.lookup(pid)) {
            self.process_info(entry, None)
        } else {
            if owner.is_none() {
                log::info!(
                    "listening socket {} (inode {}, uid {}) has no owner we can see: reported with pid 0",
                    socket.local,
                    socket.inode,
                    socket.uid
                );
            }
            ProcessInfo {
                pid: owner.unwrap_or(0),
                uid: socket.uid,
                user: self.users.name(socket.uid),
                ..ProcessInfo::default()
            }
        };
        let mut record = if owner.is_some() {
            self.with_lineage(table, EventType::Listen, time.to_owned(), process)
        } else {
            EventRecord::new(
                EventType::Listen,
                time.to_owned(),
                self.host.clone(),
                process,
            )
        };
        let family = if socket.family_v6 {
            Family::Ipv6
        } else {
            Family::Ipv4
        };
        let local = Endpoint {
            ip: socket.local.ip(),
            port: socket.local.port(),
        };
        record.socket = Some(decode::socket_info(family, local, None));
        record.pre_existing = true;
        record
    }

    /// The process as the table knows it; for a live event, with the ids, comm and cgroup the
    /// kernel reported at that moment (the parent from the table when the kernel side could not
    /// read it).
    fn process_info(&mut self, entry: &ProcessEntry, live: Option<&Origin>) -> ProcessInfo {
        let (ppid, uid, gid, comm, cgroup_id) = match live {
            Some(o) => (
                if o.ppid != 0 { o.ppid } else { entry.ppid },
                o.uid,
                o.gid,
                &o.comm,
                o.cgroup_id,
            ),
            None => (
                entry.ppid,
                entry.uid,
                entry.gid,
                &entry.comm,
                entry.cgroup_id.unwrap_or(0),
            ),
        };
        ProcessInfo {
            pid: entry.pid,
            ppid,
            uid,
            gid,
            user: self.users.name(uid),
            comm: comm.clone(),
            exe: entry.exe.clone(),
            argv: entry.argv.clone(),
            argv_truncated: entry.argv_truncated,
            cgroup_id,
        }
    }

    /// The record for `process`, with its ancestry and nearest web server from the table.
    fn with_lineage(
        &self,
        table: &mut ProcessTable,
        event: EventType,
        time: String,
        process: ProcessInfo,
    ) -> EventRecord {
        let pid = process.pid;
        let mut record = EventRecord::new(event, time, self.host.clone(), process);
        record.ancestry = table.ancestry(pid);
        record.web_server = table.web_server(pid);
        record
    }
}

/// The owner to report for a socket shared by several processes (a master and its forked
/// workers): the one whose parent is not itself an owner, lowest pid on ties.
pub fn main_owner(owners: &[u32], table: &ProcessTable) -> Option<u32> {
    let mut sorted = owners.to_vec();
    sorted.sort_unstable();
    sorted
        .iter()
        .copied()
        .find(|&pid| table.get(pid).is_none_or(|e| !owners.contains(&e.ppid)))
        .or_else(|| sorted.first().copied())
}
