//! The pipeline every ring-buffer record takes, in the order the data flows:
//! [`decode`] → [`ProcessTable`] and the login tracker ([`Logins`]) → [`Enricher`] →
//! [`Detector`] → [`Output`], with the counts the status records report ([`status::Board`]). The start-up baseline's listeners enter at the
//! enrich stage. [`crate::daemon`] drives it from the ring buffer; the unit tests drive it with
//! wire bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{MapData, RingBuf};
use log::debug;
use monitor_common::{AF_INET, AF_INET6, EXE_SSH_SERVER, EventKind, SockEvent};

use crate::{
    baseline, clock,
    decode::{self, KernelEvent},
    detect::Detector,
    enrich::Enricher,
    iplist::{IpLists, Outcome, ReloadReport},
    login::{self, Login, Logins},
    output::{Output, OutputError, Sink},
    probes::{Counters, Probes, Watch},
    process_table::ProcessTable,
    record::{EventRecord, EventType, Record, ReloadInfo, Status, StatusRecord},
    status,
};

/// State of the running daemon, apart from the probes and the ring buffer (kept outside so that
/// ring-buffer items can be borrowed while this is mutated).
pub struct Pipeline<S: Sink> {
    /// `--events`: print every event, not only alerts and status records.
    pub print_events: bool,
    pub table: ProcessTable,
    pub enricher: Enricher,
    pub detector: Detector,
    pub out: Output<S>,
    pub board: status::Board,
    /// The kernel's drop and error counters as last read.
    pub counters: Counters,
    /// SSH sessions being joined to their connections.
    pub logins: Logins,
    pub login_config: login::Config,
    /// The kernel side's run-time filters (`None` in unit tests).
    pub watch: Option<Watch>,
    /// The `[enrichment]` list files (`None` without any).
    pub lists: Option<IpLists>,
    /// The newest exec or fork record handled (`CLOCK_BOOTTIME` ns): the kernel is told how far
    /// they are judged until it knows this far.
    pub newest_lineage_ns: u64,
}

/// How long a listen record waits in the kernel for its listen(2) to return before the daemon
/// sends it itself ([`Pipeline::sweep_listens`]): a listen(2) returns within microseconds, an
/// `io_uring` listen never does.
const ABANDONED_LISTEN_NS: u64 = 20_000_000;

/// How long before a drain began a record must be stamped to be certainly in the ring buffer.
const JUDGED_MARGIN_NS: u64 = 1_000_000;

/// The timestamp of a raw exec or fork record (the header's first `u32` is the kind, its
/// `ktime_ns` at byte 8); `None` for any other record.
fn lineage_ktime(bytes: &[u8]) -> Option<u64> {
    let kind = u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?);
    if kind != EventKind::Exec as u32 && kind != EventKind::Fork as u32 {
        return None;
    }
    Some(u64::from_ne_bytes(bytes.get(8..16)?.try_into().ok()?))
}

impl<S: Sink> Pipeline<S> {
    /// Reads what each eBPF program has cost the kernel, for the next status record (only while
    /// `kernel.bpf_stats_enabled` is 1; a few fdinfo reads, so only before status records).
    pub fn refresh_program_runs(&mut self, probes: &Probes) {
        self.board.programs = probes.program_runs();
    }

    pub fn refresh_counters(&mut self, probes: &Probes) {
        match probes.counters() {
            Ok(c) => self.counters = c,
            Err(e) => debug!("cannot read kernel counters: {e}"),
        }
    }

    /// Handles up to `max` queued records, then flushes the output. Returns whether records may
    /// be left.
    ///
    /// When the ring buffer was emptied and exec or fork records were among those handled, the
    /// kernel is told it may stop treating the processes they made as too new to judge (see
    /// `monitor-ebpf/src/scope.rs`): every record stamped a millisecond before this drain began
    /// has been submitted by then (a program runs for microseconds) and so handled here.
    pub fn drain(&mut self, rb: &mut RingBuf<MapData>, max: usize) -> Result<bool, OutputError> {
        self.enricher.resample_clock();
        let began = clock::boottime_ns().ok();
        let mut n = 0;
        while n < max {
            let Some(item) = rb.next() else {
                self.out.flush()?;
                if let (Some(began), Some(watch)) = (began, self.watch.as_mut()) {
                    let judged = began.saturating_sub(JUDGED_MARGIN_NS);
                    // Only while a handled exec or fork is newer than what the kernel was told:
                    // otherwise no process's verdict would change.
                    if self.newest_lineage_ns > watch.scope().judged_ns
                        && let Err(e) = watch.judged_up_to(judged)
                    {
                        debug!("cannot tell the kernel how far exec and fork are judged: {e}");
                    }
                }
                return Ok(false);
            };
            n += 1;
            if let Some(at) = lineage_ktime(&item) {
                self.newest_lineage_ns = self.newest_lineage_ns.max(at);
            }
            self.handle(&item)?;
        }
        self.out.flush()?;
        Ok(true)
    }

    /// Sends the listen records the kernel parked for a listen(2) that never returned (an
    /// `io_uring` listen), as if they had come through the ring buffer.
    pub fn sweep_listens(&mut self) -> Result<(), OutputError> {
        let Some(watch) = self.watch.as_mut() else {
            return Ok(());
        };
        let Ok(now) = clock::boottime_ns() else {
            return Ok(());
        };
        let mut abandoned = watch.abandoned_listens(now, ABANDONED_LISTEN_NS);
        if abandoned.is_empty() {
            return Ok(());
        }
        for event in &mut abandoned {
            if event.sport == 0 {
                event.sport = autobound_port(self.table.procfs().root(), event).unwrap_or(0);
            }
            self.handle(decode::sock_event_bytes(event))?;
        }
        self.out.flush()
    }

    /// One ring-buffer record: decoded, applied to the table and the login tracker, enriched,
    /// judged, printed.
    pub fn handle(&mut self, bytes: &[u8]) -> Result<(), OutputError> {
        let ev = match decode::decode(bytes) {
            Ok(ev) => ev,
            Err(e) => {
                self.board.decode_errors += 1;
                debug!("dropping an undecodable {}-byte record: {e}", bytes.len());
                return Ok(());
            }
        };
        let now = ev.origin().ktime_ns;
        let counts = &mut self.board.events;
        let (record, login) = match ev {
            KernelEvent::Fork(f) => {
                counts.fork += 1;
                if let Some(child) = self.table.on_fork(&f.origin, f.child_tid, f.child_tgid) {
                    self.logins.on_fork(f.origin.tgid, child);
                    // The kernel hands the mark down at fork itself; this covers children forked
                    // before their parent was marked (a web server that just started).
                    if self.watch.is_some() && self.table.under_web_server(child) {
                        self.mark_web_tree(child);
                    }
                }
                (None, None)
            }
            KernelEvent::Exec(e) => {
                counts.exec += 1;
                self.table.on_exec(&e);
                let mut record =
                    self.enricher
                        .event(&mut self.table, EventType::Exec, &e.origin, None);
                record.filename = Some(e.filename);
                if record.web_server.is_some() {
                    self.mark_web_tree(e.origin.tgid);
                }
                let exe = record.process.exe.as_deref();
                if self.login_config.is_ssh_server(exe) {
                    self.watch_exe(e.origin.tgid);
                }
                let exe = record.process.exe.as_deref();
                let login = self.logins.on_exec(
                    &self.login_config,
                    e.origin.tgid,
                    e.origin.uid,
                    exe,
                    &record.process.argv,
                    e.origin.ktime_ns,
                );
                (Some(record), login)
            }
            KernelEvent::Exit(x) => {
                counts.exit += 1;
                // Built before the table marks the process exited, with its last identity.
                let login = self
                    .logins
                    .on_exit(x.origin.tgid, x.exit_code, x.origin.ktime_ns)
                    .map(|l| self.enricher.login(&mut self.table, &l));
                // No rule judges exits: without --events nobody reads the record, so skip
                // building it (lookups and ancestry clones on every process exit).
                let record = if self.print_events {
                    let mut record =
                        self.enricher
                            .event(&mut self.table, EventType::Exit, &x.origin, None);
                    record.exit_code = Some(x.exit_code);
                    Some(record)
                } else {
                    None
                };
                self.table.on_exit(&x.origin);
                if let Some(login) = login {
                    self.board.events.login += 1;
                    self.emit(login)?;
                }
                (record, None)
            }
            KernelEvent::Sock(s) => {
                let kind = match s.kind {
                    decode::SockKind::Listen => {
                        counts.listen += 1;
                        EventType::Listen
                    }
                    decode::SockKind::Connect => {
                        counts.connect += 1;
                        EventType::Connect
                    }
                    decode::SockKind::Accept => {
                        counts.accept += 1;
                        EventType::Accept
                    }
                };
                let record = self
                    .enricher
                    .event(&mut self.table, kind, &s.origin, Some(s.socket));
                if kind == EventType::Accept
                    && let Some(socket) = &record.socket
                {
                    let ssh = self
                        .login_config
                        .is_ssh_server(record.process.exe.as_deref());
                    self.logins.on_accept(s.origin.tgid, socket, ssh);
                }
                (Some(record), None)
            }
            KernelEvent::Cred(c) => {
                counts.cred += 1;
                self.table.on_cred(&c.origin);
                let user = self.enricher.user_name(c.origin.uid);
                self.logins.on_cred(
                    &self.login_config,
                    c.origin.tgid,
                    c.origin.uid,
                    user.as_deref(),
                    c.origin.ktime_ns,
                );
                (None, None)
            }
            KernelEvent::Setsid(e) => {
                counts.setsid += 1;
                self.logins.on_setsid(e.origin.tgid);
                (None, None)
            }
            KernelEvent::Pam(p) => {
                counts.pam += 1;
                self.logins
                    .on_pam(p.origin.tgid, p.call, p.ret, p.origin.ktime_ns);
                (None, None)
            }
        };
        if let Some(record) = record {
            self.emit(record)?;
        }
        if let Some(login) = login {
            self.emit_login(&login)?;
        }
        self.logins_due(now)
    }

    /// Reports the logins whose wait for a command ended by `now_ns` (`CLOCK_BOOTTIME`).
    pub fn logins_due(&mut self, now_ns: u64) -> Result<(), OutputError> {
        if self.logins.next_deadline().is_none_or(|d| d > now_ns) {
            return Ok(());
        }
        for login in self.logins.due(now_ns) {
            self.emit_login(&login)?;
        }
        Ok(())
    }

    fn emit_login(&mut self, login: &Login) -> Result<(), OutputError> {
        self.board.events.login += 1;
        let record = self.enricher.login(&mut self.table, login);
        self.emit(record)
    }

    /// Starts serving the lists as loaded (the daemon loaded them before any eBPF, so that a bad
    /// file stops it with exit code 2): records are enriched from them and the kernel watches
    /// their prefixes.
    pub fn serve_lists(&mut self, lists: IpLists, report: &ReloadReport) {
        log_lists(report);
        self.board.lists_read(report, &clock::now_rfc3339());
        self.use_database(&lists);
        self.lists = Some(lists);
    }

    /// Re-reads the list files that changed; a file that cannot be used keeps its last good copy.
    /// Prints a `reloaded` status record when anything was re-read or refused.
    pub fn reload_lists(&mut self) -> Result<(), OutputError> {
        let Some(mut lists) = self.lists.take() else {
            return Ok(());
        };
        let report = lists.reload_changed();
        if report.rebuilt {
            self.use_database(&lists);
        }
        self.lists = Some(lists);
        log_lists(&report);
        if self.board.lists_read(&report, &clock::now_rfc3339()) {
            self.board.reloads += 1;
            let reload = ReloadInfo {
                trigger: "list_file",
                accepted: true,
                changed: lists_changed(&report),
                error: None,
            };
            let record = self.status_with(Status::Reloaded, None, Some(reload));
            self.out.write(&Record::Status(record))?;
            self.out.flush()?;
        }
        Ok(())
    }

    pub fn use_database(&mut self, lists: &IpLists) {
        let database = lists.database();
        if let Some(watch) = self.watch.as_mut() {
            match watch.set_nets(database.watched_prefixes()) {
                Ok(update) => self.board.nets = update,
                Err(e) => log::warn!("cannot update the kernel's watched prefixes: {e}"),
            }
        }
        self.enricher.set_lists(database);
    }

    /// Tells the kernel side that the executable process `pid` runs is an SSH server, so that its
    /// accepts and PAM results are sent (a new sshd binary after an upgrade, seen at its exec).
    /// Tells the kernel that `pid` is under a web server: its UDP destinations are reported.
    pub fn mark_web_tree(&mut self, pid: u32) {
        if let Some(watch) = self.watch.as_mut()
            && let Err(e) = watch.mark_web_tree(pid)
        {
            log::warn!("cannot mark pid {pid} as under a web server in the kernel: {e}");
        }
    }

    fn watch_exe(&mut self, pid: u32) {
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        let Some(ino) = self.table.procfs().exe_inode(pid) else {
            return;
        };
        if let Err(e) = watch.watch_exe(ino, EXE_SSH_SERVER) {
            log::warn!("cannot watch the SSH server executable of pid {pid}: {e}");
        }
    }

    /// Judges the event, prints it (with `--events`), then prints its alerts.
    fn emit(&mut self, event: EventRecord) -> Result<(), OutputError> {
        let alerts = self.detector.on_event(&event, self.counters.drops);
        if self.print_events {
            self.out.write(&Record::Event(event))?;
        }
        for alert in alerts {
            self.board.alert(alert.rule);
            self.out.write(&Record::Alert(alert))?;
        }
        Ok(())
    }

    /// The `started` status record, then the start-up baseline's records: `started` first, so a
    /// reader knows the daemon is up (and how many pre-existing listeners follow) before any
    /// record it produced.
    pub fn start(&mut self, listeners: &[baseline::ListeningSocket]) -> Result<(), OutputError> {
        let started = self.status(Status::Started, Some(listeners.len()));
        log_status(&started);
        self.out.write(&Record::Status(started))?;
        let time = clock::now_rfc3339();
        for socket in listeners {
            let record = self
                .enricher
                .pre_existing_listener(&mut self.table, socket, &time);
            self.emit(record)?;
        }
        self.out.flush()
    }

    /// Writes a status record and flushes. The `started` and `stopped` records are also logged on
    /// stderr, so that a run whose stdout goes elsewhere (`/dev/null`, a reader that went away)
    /// still tells when it was up and what it counted.
    pub fn report(&mut self, status: Status) -> Result<(), OutputError> {
        let record = self.status(status, None);
        if status == Status::Stopped {
            log_status(&record);
        }
        let written = self.out.write(&Record::Status(record));
        written.and_then(|()| self.out.flush())
    }

    fn status(&self, status: Status, pre_existing_listeners: Option<usize>) -> StatusRecord {
        self.status_with(status, pre_existing_listeners, None)
    }

    /// A status record as of now (`reload`: what a reload did, for a `reloaded` record).
    pub fn status_with(
        &self,
        status: Status,
        pre_existing_listeners: Option<usize>,
        reload: Option<ReloadInfo>,
    ) -> StatusRecord {
        self.board.record(
            status,
            status::Now {
                time: clock::now_rfc3339(),
                host: self.enricher.host(),
                kernel: &self.counters,
                table: self.table.stats(),
                dedup: self.detector.status(),
                ssh_sessions: self.logins.len(),
                output: self.out.status(),
                reload,
            },
            pre_existing_listeners,
        )
    }
}

/// `enrichment.<source>` for each list file a load or reload re-read or refused.
pub fn lists_changed(report: &ReloadReport) -> Vec<String> {
    report
        .files
        .iter()
        .filter(|f| f.outcome != Outcome::Unchanged)
        .map(|f| format!("enrichment.{}", status::source_name(f)))
        .collect()
}

/// Logs a status record on stderr, whole, as one line.
pub fn log_status(record: &StatusRecord) {
    match serde_json::to_string(&Record::Status(record.clone())) {
        Ok(line) => log::info!("status: {line}"),
        Err(e) => log::warn!("cannot log a status record: {e}"),
    }
}

/// Logs what a load or reload of the lists did: every bad line (up to the report's cap) with
/// its file and line, every refusal.
pub fn log_lists(report: &ReloadReport) {
    for file in &report.files {
        match &file.outcome {
            Outcome::Unchanged => continue,
            Outcome::KeptLastGood(_) => log::warn!("{file}"),
            Outcome::Loaded | Outcome::Reloaded => log::info!("{file}"),
        }
        for bad in file.bad_lines.shown() {
            log::warn!("{}; line skipped", bad.at(&file.path));
        }
        let hidden = file.bad_lines.count() - file.bad_lines.shown().len();
        if hidden > 0 {
            log::warn!("{}: {hidden} more bad lines skipped", file.path.display());
        }
    }
}

/// The port autobind gave a socket whose listen record was taken before it picked one (an
/// `io_uring` listen without a bind: the record was parked at `TCP_LISTEN` and swept, with no
/// listen(2) return to read the port at): the one socket of the process listening on that
/// address, from `/proc` (`None` when it is gone or holds several).
fn autobound_port(proc_root: &std::path::Path, event: &SockEvent) -> Option<u16> {
    let (ip, v6) = match event.family {
        AF_INET => {
            let [a, b, c, d, ..] = event.saddr;
            (IpAddr::V4(Ipv4Addr::new(a, b, c, d)), false)
        }
        AF_INET6 => (IpAddr::V6(Ipv6Addr::from(event.saddr)), true),
        _ => return None,
    };
    baseline::listening_port(proc_root, event.header.tgid, ip, v6)
}

#[cfg(test)]
mod tests {
    use std::{fs, sync::Arc};

    use monitor_common::{
        ARGS_LEN, EXE_LEN, EXEC_EXE_RESOLVED, ExecEvent, ExitEvent, FILENAME_LEN, ForkEvent,
        IPPROTO_TCP,
    };
    use serde_json::{Value, json};

    use super::*;
    use crate::{
        clock::Clock,
        enrich::main_owner,
        host::UserNames,
        policy::Policy,
        record::Protocol,
        testing::{TempDir, bytes_of, fake_proc, origin, wire_header},
    };

    fn exec_bytes(
        tgid: u32,
        ppid: u32,
        comm: &str,
        exe: Option<&str>,
        filename: &str,
        args: &[&str],
    ) -> Vec<u8> {
        let mut ev = ExecEvent {
            header: wire_header(EventKind::Exec, tgid, ppid, comm, 2_000_000_000),
            old_tid: tgid,
            flags: if exe.is_some() { EXEC_EXE_RESOLVED } else { 0 },
            filename_len: filename.len() as u32,
            exe_len: exe.map_or(0, |e| e.len() as u32),
            args_len: 0,
            _pad0: 0,
            exe_ino: 0,
            exe_size: 0,
            exe_mtime_sec: 0,
            exe_mtime_nsec: 0,
            exe_dev: 0,
            filename: [0; FILENAME_LEN],
            exe: [0; EXE_LEN],
            args: [0; ARGS_LEN],
        };
        ev.filename[..filename.len()].copy_from_slice(filename.as_bytes());
        if let Some(exe) = exe {
            ev.exe[..exe.len()].copy_from_slice(exe.as_bytes());
        }
        let mut n = 0;
        for a in args {
            ev.args[n..n + a.len()].copy_from_slice(a.as_bytes());
            n += a.len() + 1;
        }
        ev.args_len = n as u32;
        bytes_of(&ev)
    }

    struct Fixture {
        p: Pipeline<Vec<u8>>,
        _dir: TempDir,
    }

    /// A pipeline over a synthetic /proc holding pid 1 and an nginx (pid 100), and a passwd
    /// file naming uid 33.
    fn fixture(print_events: bool) -> Fixture {
        let dir = TempDir::new();
        let proc_root = dir.path().join("proc");
        fake_proc(
            &proc_root,
            1,
            0,
            "init",
            Some("/sbin/init"),
            &["/sbin/init"],
            1,
        );
        fake_proc(
            &proc_root,
            100,
            1,
            "nginx",
            Some("/usr/sbin/nginx"),
            &["nginx: worker process"],
            1,
        );
        fs::write(
            dir.path().join("passwd"),
            "www-data:x:33:33::/var/www:/usr/sbin/nologin\n",
        )
        .unwrap();
        let policy = Policy::embedded_default();
        let policy_logins = policy.logins.clone();
        let mut table = ProcessTable::new(1000, proc_root);
        table.set_programs(policy.programs(), crate::identity::Catalog::default());
        table.seed().unwrap();
        let p = Pipeline {
            print_events,
            table,
            enricher: Enricher::new(
                "web1".into(),
                UserNames::new(dir.path().join("passwd")),
                Clock::with_offset(1_795_410_000_000_000_000),
            ),
            detector: Detector::new(Arc::new(policy)),
            out: Output::new(Vec::new()),
            board: status::Board {
                ring_buffer_bytes: 4096,
                policy_source: "embedded default".into(),
                ..status::Board::default()
            },
            counters: Counters::default(),
            logins: Logins::new(),
            login_config: policy_logins,
            watch: None,
            lists: None,
            newest_lineage_ns: 0,
        };
        let mut p = p;
        p.enricher
            .set_web_server_users(Policy::embedded_default().web_server_users);
        Fixture { p, _dir: dir }
    }

    fn events(p: &mut Pipeline<Vec<u8>>) -> Vec<Value> {
        p.out.flush().unwrap();
        String::from_utf8(p.out.get_ref().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["type"] == "event")
            .collect()
    }

    /// An `io_uring` listen without a bind is swept with port 0; its port is read back from
    /// the process's socket in `/proc` (tcp for `AF_INET`, tcp6 for `AF_INET6`).
    #[cfg(target_endian = "little")]
    #[test]
    fn swept_autobound_listens_get_their_port_from_proc() {
        let dir = TempDir::new();
        let p = dir.path().join("50");
        fs::create_dir_all(p.join("fd")).unwrap();
        fs::create_dir_all(p.join("net")).unwrap();
        std::os::unix::fs::symlink("socket:[7001]", p.join("fd/3")).unwrap();
        std::os::unix::fs::symlink("socket:[7002]", p.join("fd/4")).unwrap();
        let head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        // 0.0.0.0:39039 and [::]:8080, listening; an established row is no listener.
        fs::write(
            p.join("net/tcp"),
            format!("{head}   0: 00000000:987F 00000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 7001 1 0\n   1: 0100007F:987F 0100007F:D000 01 00000000:00000000 00:00000000 00000000    33        0 7001 1 0\n"),
        )
        .unwrap();
        fs::write(
            p.join("net/tcp6"),
            format!("{head}   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 7002 1 0\n"),
        )
        .unwrap();
        let mut ev = SockEvent {
            header: wire_header(EventKind::Listen, 50, 1, "evasions", 1),
            family: AF_INET,
            protocol: IPPROTO_TCP,
            sport: 0,
            dport: 0,
            saddr: [0; 16],
            daddr: [0; 16],
        };
        assert_eq!(autobound_port(dir.path(), &ev), Some(39039));
        ev.family = AF_INET6;
        assert_eq!(autobound_port(dir.path(), &ev), Some(8080));
        ev.saddr[15] = 1; // ::1: no listener there
        assert_eq!(autobound_port(dir.path(), &ev), None);
        ev.family = 99;
        assert_eq!(autobound_port(dir.path(), &ev), None);
    }

    /// Connect and accept records carry the flow's Community ID with the seed the daemon was
    /// given; a listen, and a UDP send from a socket bound to no address, carry none.
    #[test]
    fn community_id_on_flows_with_the_seed() {
        let mut f = fixture(true);
        let v4 = |a: [u8; 4]| {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a);
            b
        };
        let sock = |kind, protocol, sport, saddr, dport, daddr| SockEvent {
            header: wire_header(kind, 100, 1, "nginx", 3_000_000_000),
            family: monitor_common::AF_INET,
            protocol,
            sport,
            dport,
            saddr,
            daddr,
        };
        let udp = monitor_common::IPPROTO_UDP;
        // The spec's vectors: 1.2.3.4:1122 <-> 5.6.7.8:3344.
        f.p.enricher.set_community_id_seed(1);
        for ev in [
            sock(
                EventKind::Connect,
                IPPROTO_TCP,
                1122,
                v4([1, 2, 3, 4]),
                3344,
                v4([5, 6, 7, 8]),
            ),
            sock(
                EventKind::Accept,
                IPPROTO_TCP,
                3344,
                v4([5, 6, 7, 8]),
                1122,
                v4([1, 2, 3, 4]),
            ),
            sock(
                EventKind::Connect,
                udp,
                1122,
                v4([1, 2, 3, 4]),
                3344,
                v4([5, 6, 7, 8]),
            ),
            sock(EventKind::Connect, udp, 0, [0; 16], 3344, v4([5, 6, 7, 8])),
            sock(EventKind::Listen, udp, 3344, [0; 16], 0, [0; 16]),
        ] {
            f.p.handle(&bytes_of(&ev)).unwrap();
        }
        let ids: Vec<Value> = events(&mut f.p)
            .iter()
            .map(|v| v["community_id"].clone())
            .collect();
        assert_eq!(
            ids,
            [
                json!("1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
                json!("1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
                json!("1:OShq+iKDAMVouh/4bMxB9Sz4amw="),
                Value::Null,
                Value::Null,
            ]
        );
    }

    #[test]
    fn web_shell_chain_becomes_event_records() {
        let mut f = fixture(true);
        let p = &mut f.p;
        // nginx forks; the child execs sh; sh connects to an IPv4-mapped address; sh exits.
        p.handle(&bytes_of(&ForkEvent {
            header: wire_header(EventKind::Fork, 100, 1, "nginx", 1_000_000_000),
            child_tid: 200,
            child_tgid: 200,
        }))
        .unwrap();
        p.handle(&exec_bytes(
            200,
            100,
            "sh",
            Some("/usr/bin/dash"),
            "/bin/sh",
            &["sh", "-c", "id"],
        ))
        .unwrap();
        let dst: std::net::Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        p.handle(&bytes_of(&SockEvent {
            header: wire_header(EventKind::Connect, 200, 100, "sh", 3_000_000_000),
            family: AF_INET6,
            protocol: IPPROTO_TCP,
            sport: 40000,
            dport: 4444,
            saddr: dst.octets(),
            daddr: dst.octets(),
        }))
        .unwrap();
        p.handle(&bytes_of(&ExitEvent {
            header: wire_header(EventKind::Exit, 200, 100, "sh", 4_000_000_000),
            exit_code: 256,
            _pad0: 0,
        }))
        .unwrap();

        let mut ev = events(p);
        let kinds: Vec<&str> = ev.iter().map(|v| v["event"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["exec", "connect", "exit"], "fork is not printed");
        // One incident for the whole tree under nginx.
        let incident = ev[0]["incident"].as_str().unwrap().to_owned();
        assert_eq!(incident.len(), 16);
        assert!(incident.chars().all(|c| c.is_ascii_hexdigit()));
        for e in &mut ev {
            assert_eq!(e["incident"], incident.as_str());
            e.as_object_mut().unwrap().remove("incident");
        }
        let tool = json!({"pid":200,"exe":"/usr/bin/dash","kind":"shell","matched":"path"});
        let nginx = json!({"pid":100,"exe":"/usr/sbin/nginx","comm":"nginx","argv":["nginx: worker process"]});
        let init = json!({"pid":1,"exe":"/sbin/init","comm":"init","argv":["/sbin/init"]});
        let sh = json!({"pid":200,"ppid":100,"uid":33,"euid":33,"gid":33,"user":"www-data","comm":"sh",
                        "exe":"/usr/bin/dash","argv":["sh","-c","id"],"cgroup_id":4242});
        assert_eq!(
            ev[0],
            json!({"type":"event","event":"exec","time":"2026-11-23T05:00:02.000000000Z","host":"web1",
                   "process":sh,"filename":"/bin/sh","socket":null,"ancestry":[nginx, init],
                   "web_server":nginx,"egress_tool":tool})
        );
        assert_eq!(
            ev[1],
            json!({"type":"event","event":"connect","time":"2026-11-23T05:00:03.000000000Z","host":"web1",
                   "process":sh,"socket":{"protocol":"tcp","family":"ipv6",
                        "local":{"ip":"127.0.0.1","port":40000},"remote":{"ip":"127.0.0.1","port":4444},
                        "mapped_ipv4":true},
                   // The packets are IPv4: the flow's id is the IPv4 tuple's.
                   "community_id":"1:TPuucUk9l3K5kYNn60GSnxNC5m4=",
                   "enrichment":{"tor_exit":false,"reputation":null,"lists":[],"trusted":false},
                   "ancestry":[nginx, init],"web_server":nginx,"egress_tool":tool})
        );
        assert_eq!(ev[2]["exit_code"], 256);
        assert_eq!(ev[2]["process"], sh);
        let c = p.board.events;
        assert_eq!(
            (c.fork, c.exec, c.connect, c.exit, c.listen),
            (1, 1, 1, 1, 0)
        );
    }

    #[test]
    fn exe_is_never_taken_from_comm() {
        let mut f = fixture(true);
        // An exec the kernel could not resolve, of a pid /proc does not have: exe stays null.
        f.p.handle(&exec_bytes(300, 1, "nginx", None, "/tmp/x", &["nginx"]))
            .unwrap();
        let ev = events(&mut f.p);
        assert_eq!(ev[0]["process"]["exe"], Value::Null);
        assert_eq!(ev[0]["process"]["comm"], "nginx");
        assert_eq!(ev[0]["filename"], "/tmp/x");
    }

    #[test]
    fn without_events_flag_nothing_but_counts() {
        let mut f = fixture(false);
        f.p.handle(&exec_bytes(
            300,
            1,
            "id",
            Some("/usr/bin/id"),
            "/usr/bin/id",
            &["id"],
        ))
        .unwrap();
        assert!(events(&mut f.p).is_empty());
        assert_eq!(f.p.board.events.exec, 1);
    }

    #[test]
    fn undecodable_records_are_counted_not_fatal() {
        let mut f = fixture(true);
        f.p.handle(&[1, 2, 3]).unwrap();
        let mut h = bytes_of(&wire_header(EventKind::Exit, 1, 0, "x", 0));
        h[0] = 99;
        f.p.handle(&h).unwrap();
        assert_eq!(f.p.board.decode_errors, 2);
        assert!(events(&mut f.p).is_empty());
        let status =
            serde_json::to_value(Record::Status(f.p.status(Status::Running, None))).unwrap();
        assert_eq!(status["type"], "status");
        assert_eq!(status["status"], "running");
        assert_eq!(status["errors"]["decode"], 2);
        assert_eq!(
            status["events"],
            json!({"listen":0,"connect":0,"accept":0,"exec":0,"fork":0,"exit":0,"cred":0,"setsid":0,"pam":0,"login":0})
        );
        assert_eq!(status["process_table"]["size"], 2);
        assert_eq!(status["policy"], "embedded default");
        assert!(status.get("pre_existing_listeners").is_none());
    }

    #[test]
    fn main_owner_prefers_the_master() {
        let mut f = fixture(true);
        // Workers 201 and 202 forked by master 100 share its socket.
        for child in [201, 202] {
            f.p.table.on_fork(&origin(100, 1, "nginx", 1), child, child);
        }
        assert_eq!(main_owner(&[202, 100, 201], &f.p.table), Some(100));
        assert_eq!(main_owner(&[202, 201], &f.p.table), Some(201));
        assert_eq!(main_owner(&[], &f.p.table), None);
    }

    fn records(p: &mut Pipeline<Vec<u8>>) -> Vec<Value> {
        p.out.flush().unwrap();
        String::from_utf8(p.out.get_ref().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect()
    }

    #[test]
    fn started_comes_before_the_baseline_records() {
        let mut f = fixture(true);
        let tcp = baseline::ListeningSocket {
            protocol: Protocol::Tcp,
            inode: 1,
            netns: 1,
            local: "0.0.0.0:4444".parse().unwrap(),
            family_v6: false,
            uid: 33,
            owners: vec![100],
        };
        // The same process's UDP socket on an odd port of every IPv6 address.
        let udp = baseline::ListeningSocket {
            protocol: Protocol::Udp,
            inode: 2,
            local: "[::]:31337".parse().unwrap(),
            family_v6: true,
            ..tcp.clone()
        };
        let sockets = [tcp, udp];
        f.p.start(&sockets).unwrap();
        let out = records(&mut f.p);
        let kinds: Vec<(&str, &str)> = out
            .iter()
            .map(|v| {
                (
                    v["type"].as_str().unwrap(),
                    v["status"].as_str().or(v["event"].as_str()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("status", "started"),
                ("event", "listen"),
                ("alert", "listen"),
                ("event", "listen"),
                ("alert", "listen"),
            ]
        );
        assert_eq!(out[0]["pre_existing_listeners"], 2);
        assert_eq!(out[1]["pre_existing"], true);
        // nginx is itself the web server of its own records.
        assert_eq!(out[1]["web_server"]["pid"], 100);
        assert_eq!(out[2]["title"], "Unexpected Port Opened: 4444");
        assert_eq!(
            out[3]["socket"],
            json!({"protocol": "udp", "family": "ipv6",
                "local": {"ip": "::", "port": 31337}, "remote": null})
        );
        assert_eq!(out[4]["title"], "Unexpected Port Opened: 31337/udp");
        assert_eq!(out[4]["pre_existing"], true);
        assert_eq!(
            out[4]["dedup"],
            "unexpected_listen:/usr/sbin/nginx:31337/udp"
        );
    }

    #[test]
    fn double_forked_shell_keeps_its_web_server() {
        let mut f = fixture(true);
        let p = &mut f.p;
        let fork = |parent: u32, ppid: u32, comm: &str, child: u32, t: u64| {
            bytes_of(&ForkEvent {
                header: wire_header(EventKind::Fork, parent, ppid, comm, t),
                child_tid: child,
                child_tgid: child,
            })
        };
        // nginx → 200 → 300; 200 exits; 300 (reparented: header ppid 1) execs sh.
        p.handle(&fork(100, 1, "nginx", 200, 1_000_000_000))
            .unwrap();
        p.handle(&fork(200, 100, "nginx", 300, 1_100_000_000))
            .unwrap();
        p.handle(&bytes_of(&ExitEvent {
            header: wire_header(EventKind::Exit, 200, 100, "nginx", 1_200_000_000),
            exit_code: 0,
            _pad0: 0,
        }))
        .unwrap();
        p.handle(&exec_bytes(
            300,
            1,
            "sh",
            Some("/usr/bin/dash"),
            "/bin/sh",
            &["sh", "-i"],
        ))
        .unwrap();
        let out = records(p);
        let exec = out
            .iter()
            .find(|v| v["type"] == "event" && v["event"] == "exec")
            .unwrap();
        assert_eq!(exec["ancestry"][0]["pid"], 200);
        assert_eq!(exec["web_server"]["pid"], 200);
        let alert = out.iter().find(|v| v["type"] == "alert").unwrap();
        assert_eq!(alert["rule"], "webserver_shell");
        assert_eq!(alert["web_server"]["exe"], "/usr/sbin/nginx");
    }
}
