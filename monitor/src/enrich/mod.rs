//! The enrich stage, between the process table and the rules: it turns a decoded kernel event
//! plus the table's state into an event record's context (the process, its ancestry, the
//! nearest web server, what the offline lists say of the remote address), and gives the rules
//! that record as a [`Context`] whose lineage verdicts ([`lineage`]) are computed once, on first
//! use.
//!
//! Live events come through [`Enricher::event`], logins the tracker recognised through
//! [`Enricher::login`], the start-up baseline's listeners through
//! [`Enricher::pre_existing_listener`]; all build the record from the same pieces, so a socket
//! found at start-up reads exactly like one seen live. Replayed records already carry their
//! context and go straight to [`Context`].

pub mod community_id;
mod context;
pub mod lineage;
pub mod lists;

use std::{net::IpAddr, sync::Arc};

pub use self::context::{Context, Programs};
use crate::{
    baseline::ListeningSocket,
    clock::Clock,
    decode::{self, Origin},
    host::UserNames,
    iplist,
    login::{Login, Trigger},
    netrange,
    process_table::{ProcessEntry, ProcessTable},
    record::{
        Endpoint, EnrichmentInfo, EventRecord, EventType, Family, LoginInfo, ProcessInfo,
        ReputationInfo, SocketInfo, SshdPids,
    },
};

/// Builds event records: host name, user names, wall-clock time and the offline lists on top of
/// the table.
pub struct Enricher {
    host: String,
    users: UserNames,
    clock: Clock,
    lists: Arc<iplist::Enrichment>,
    /// The policy's `web_server_users`: their processes get an `incident` without a web server
    /// in their lineage.
    web_server_users: Vec<String>,
    /// `--community-id-seed`: the seed of every record's `community_id`.
    community_id_seed: u16,
}

impl Enricher {
    pub fn new(host: String, users: UserNames, clock: Clock) -> Self {
        Self {
            host,
            users,
            clock,
            lists: Arc::default(),
            web_server_users: Vec::new(),
            community_id_seed: 0,
        }
    }

    /// The Community ID seed (`--community-id-seed`; 0, the default of Zeek and Suricata, unless
    /// their sensors use another).
    pub fn set_community_id_seed(&mut self, seed: u16) {
        self.community_id_seed = seed;
    }

    /// The policy's `web_server_users`.
    pub fn set_web_server_users(&mut self, users: Vec<String>) {
        self.web_server_users = users;
    }

    /// The lists records are enriched from from now on (a reload swaps them whole).
    pub fn set_lists(&mut self, lists: Arc<iplist::Enrichment>) {
        self.lists = lists;
    }

    /// The user name of `uid`, from the passwd database.
    pub fn user_name(&mut self, uid: u32) -> Option<String> {
        self.users.name(uid)
    }

    /// What the lists say about `ip` (IPv4-mapped and NAT64 addresses as their IPv4).
    pub fn address(&self, ip: IpAddr) -> EnrichmentInfo {
        let hit = self.lists.lookup(netrange::canonical(ip));
        EnrichmentInfo {
            tor_exit: hit.tor_exit,
            reputation: hit.reputation.map(|r| ReputationInfo {
                classification: r.classification,
                name: r.name.clone(),
                tags: r.tags.clone(),
            }),
            lists: hit.lists.iter().map(str::to_owned).collect(),
            trusted: hit.trusted,
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Re-reads the wall-clock offset when it is due (the wall clock may have been stepped).
    pub fn resample_clock(&mut self) {
        self.clock.maybe_resample();
    }

    /// An event record for the process that caused `origin`: ids, comm and cgroup as the kernel
    /// reported them, executable and argv from the table, its lineage, and the socket with what
    /// the lists say of its remote address.
    pub fn event(
        &mut self,
        table: &mut ProcessTable,
        event: EventType,
        origin: &Origin,
        socket: Option<SocketInfo>,
    ) -> EventRecord {
        let entry = table.for_event(origin);
        let process = self.process_info(entry, Some(origin));
        let time = self.clock.rfc3339(origin.ktime_ns);
        let mut record = self.with_lineage(table, event, time, process);
        self.set_socket(&mut record, socket);
        record
    }

    /// The `login` record for a login the tracker recognised: the process it is reported for,
    /// the connection, the user, the session's terminal.
    pub fn login(&mut self, table: &mut ProcessTable, login: &Login) -> EventRecord {
        // Root with `-N`: the monitor's uid is root's, and pam_loginuid set the real one.
        let uid = match login.trigger {
            Trigger::Authenticated => table.procfs().loginuid(login.pid).unwrap_or(login.uid),
            Trigger::Credentials | Trigger::Exec => login.uid,
        };
        let tty = table.procfs().tty(login.pid);
        let mut process = match table.lookup(login.pid) {
            Some(entry) => self.process_info(entry, None),
            None => ProcessInfo {
                pid: login.pid,
                ..ProcessInfo::default()
            },
        };
        // The process's own effective uid says nothing of the user who logged in when the
        // uid reported is not its own (root's session process, with pam_loginuid's).
        if process.uid != uid {
            process.euid = None;
        }
        process.uid = uid;
        process.user = self.users.name(uid);
        let user = process.user.clone();
        let time = self.clock.rfc3339(login.ktime_ns);
        let mut record = self.with_lineage(table, EventType::Login, time, process);
        let (local, remote) = (
            login.socket.local,
            login.socket.remote.unwrap_or(login.socket.local),
        );
        record.login = Some(LoginInfo {
            user,
            uid,
            remote,
            local,
            sshd: SshdPids {
                listener: login.listener,
                session: login.session,
            },
            command: login.command.clone(),
            tty,
            method: login.method,
        });
        self.set_socket(&mut record, Some(login.socket.clone()));
        record
    }

    /// The record's socket, with what the lists say of its remote address and the flow's
    /// Community ID.
    fn set_socket(&self, record: &mut EventRecord, socket: Option<SocketInfo>) {
        if let Some(socket) = &socket
            && let Some(remote) = socket.remote
        {
            record.enrichment = Some(self.address(remote.ip));
            record.community_id = community_id::of(self.community_id_seed, socket);
        }
        record.socket = socket;
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
        record.socket = Some(decode::socket_info(socket.protocol, family, local, None));
        record.pre_existing = true;
        record
    }

    /// The process as the table knows it; for a live event, with the ids, comm and cgroup the
    /// kernel reported at that moment (the parent from the table when the kernel side could not
    /// read it).
    fn process_info(&mut self, entry: &ProcessEntry, live: Option<&Origin>) -> ProcessInfo {
        let (ppid, uid, euid, gid, comm, cgroup_id) = match live {
            // The fork-time parent, like `ancestry[0]`: after reparenting the kernel reports init.
            // The effective uid from the table when the record does not carry it (fork, exit).
            Some(o) => (
                if entry.ppid != 0 { entry.ppid } else { o.ppid },
                o.uid,
                o.euid.or(entry.euid),
                o.gid,
                &o.comm,
                o.cgroup_id,
            ),
            None => (
                entry.ppid,
                entry.uid,
                entry.euid,
                entry.gid,
                &entry.comm,
                entry.cgroup_id.unwrap_or(0),
            ),
        };
        ProcessInfo {
            pid: entry.pid,
            ppid,
            uid,
            euid,
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
        let uid = process.uid;
        let web_user = process
            .user
            .as_ref()
            .is_some_and(|u| self.web_server_users.contains(u));
        let mut record = EventRecord::new(event, time, self.host.clone(), process);
        record.ancestry = table.ancestry(pid);
        record.web_server = table.web_server(pid);
        record.program = table.get(pid).and_then(|e| e.program.clone());
        if record.web_server.is_some() {
            record.egress_tool = table.tool(pid);
            record.incident = table.incident(pid);
        } else if web_user {
            record.incident = Some(table.user_incident(pid, uid));
        }
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
