//! The live loop: load the probes, seed the process table, report what was already listening,
//! then turn every ring-buffer record into an event record, judge it, and print what is asked for.
//!
//! Order at start matters: the probes are attached BEFORE `/proc` is read, so a process is either
//! in the seed or announced by an event (or both), never missed in between.

use std::{collections::BTreeMap, io::Write, sync::Arc, time::Duration};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use log::{debug, info, warn};
use serde::Serialize;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    baseline,
    clock::{self, Clock},
    decode::{self, ExecRaw, Header, RawEvent},
    detect::{Detector, lineage},
    output::{Output, OutputError},
    policy::Policy,
    probes::{AttachReport, Counters, ProbeOptions, Probes},
    process_table::{self, ProcessTable, TableStats, UserNames},
    record::{Endpoint, EventRecord, EventType, Family, ProcessInfo, SocketInfo},
};

/// Records handled per wake-up before the loop looks at signals and timers again.
const BATCH_MAX: usize = 4096;

/// Everything the daemon needs, resolved and validated by the caller (policy included) before
/// any eBPF is loaded.
pub struct Options {
    /// Print every event (`--events`), not only alerts and status records.
    pub events: bool,
    pub ring_buffer_bytes: u32,
    pub status_interval: Duration,
    pub policy: Policy,
    /// `"embedded default"` or the policy file's path, for the status record.
    pub policy_source: String,
}

/// Runs the daemon on a current-thread tokio runtime until SIGINT / SIGTERM (or until stdout is
/// closed by its reader).
pub fn run(opts: Options) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(run_async(opts))
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
struct EventCounts {
    listen: u64,
    connect: u64,
    exec: u64,
    fork: u64,
    exit: u64,
}

/// `{"type":"status", ...}`: owned, so it can be built from the pipeline while the pipeline's
/// output is borrowed to write it.
#[derive(Serialize)]
struct StatusRecord {
    #[serde(rename = "type")]
    record_type: &'static str,
    status: &'static str,
    time: String,
    host: String,
    version: &'static str,
    hooks: AttachReport,
    ring_buffer_bytes: u32,
    policy: String,
    events: EventCounts,
    drops: u64,
    errors: BTreeMap<&'static str, u64>,
    process_table: TableStats,
    alerts: u64,
    dedup: serde_json::Value,
    /// started only: sockets found listening by the start-up scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pre_existing_listeners: Option<usize>,
}

/// State of the running daemon, apart from the probes and the ring buffer (kept outside so that
/// ring-buffer items can be borrowed while this is mutated).
struct Pipeline<W: Write> {
    print_events: bool,
    ring_buffer_bytes: u32,
    policy_source: String,
    host: String,
    clock: Clock,
    table: ProcessTable,
    users: UserNames,
    detector: Detector,
    out: Output<W>,
    counts: EventCounts,
    decode_errors: u64,
    alerts: u64,
    counters: Counters,
}

async fn run_async(opts: Options) -> anyhow::Result<()> {
    let Options {
        events,
        ring_buffer_bytes,
        status_interval,
        policy,
        policy_source,
    } = opts;
    // Signals first: a SIGTERM during start-up is then handled as a clean stop.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;

    let mut probes = Probes::load(&ProbeOptions {
        ring_buffer_bytes,
        monitor_tgid: std::process::id(),
    })
    .context("cannot load and attach the eBPF programs")?;
    // The probes log what attached; the refusals (why a preferred hook was not used) are
    // reported in the status records.
    let hooks = probes.report().clone();
    let ring = probes
        .take_ring_buf()
        .context("cannot open the ring buffer")?;
    // SAFETY: the RingBuf owns its map fd (MapData) and returns that same fd from as_raw_fd for
    // its whole life; nothing else closes or replaces it while the AsyncFd owns the RingBuf.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("cannot register the ring buffer with tokio")?;

    let mut table = ProcessTable::new(process_table::DEFAULT_CAPACITY, "/proc");
    // Before seeding: the table hands down the nearest web server from the first entry on.
    table.set_web_server_classifier(Box::new(lineage::web_server_classifier(&policy)));
    match table.seed() {
        Ok(n) => info!("process table seeded with {n} processes from /proc"),
        Err(e) => warn!("process table not seeded: {e}"),
    }

    let mut p = Pipeline {
        print_events: events,
        ring_buffer_bytes,
        policy_source,
        host: process_table::hostname(),
        clock: Clock::new().context("cannot read the system clocks")?,
        table,
        users: UserNames::new("/etc/passwd"),
        detector: Detector::new(Arc::new(policy)),
        out: Output::stdout(),
        counts: EventCounts::default(),
        decode_errors: 0,
        alerts: 0,
        counters: Counters::default(),
    };
    p.refresh_counters(&probes);

    let result: anyhow::Result<()> = async {
        p.start(&hooks, &baseline_scan())?;

        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + status_interval,
            status_interval,
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting on the ring buffer")?;
                    p.refresh_counters(&probes);
                    let more = p.drain(guard.get_inner_mut(), BATCH_MAX)?;
                    // Leaving readiness set when the batch limit was hit brings us straight back
                    // after select! has had a chance to see signals and the timer.
                    if !more {
                        guard.clear_ready();
                    }
                }
                _ = tick.tick() => {
                    p.refresh_counters(&probes);
                    p.out.write(&p.status("running", &hooks, None))?;
                    p.out.flush()?;
                }
                _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
                _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if matches!(e.downcast_ref::<OutputError>(), Some(OutputError::Closed)) {
            info!("stdout closed by its reader: stopping");
            return Ok(());
        }
        return Err(e);
    }

    // Stop: print what is queued (bounded, the programs are still producing), take the final
    // counts, detach by dropping the probes, then print everything left (finite now) and the
    // final status.
    let rb = ring.get_mut();
    let stop = || -> Result<(), OutputError> {
        p.drain(rb, BATCH_MAX * 4)?;
        p.refresh_counters(&probes);
        drop(probes);
        p.drain(rb, usize::MAX)?;
        p.out.write(&p.status("stopped", &hooks, None))?;
        p.out.flush()
    };
    match stop() {
        Ok(()) | Err(OutputError::Closed) => Ok(()),
        Err(e) => Err(e).context("cannot write the final records"),
    }
}

impl<W: Write> Pipeline<W> {
    fn refresh_counters(&mut self, probes: &Probes) {
        match probes.counters() {
            Ok(c) => self.counters = c,
            Err(e) => debug!("cannot read kernel counters: {e}"),
        }
    }

    /// Handles up to `max` queued records, then flushes stdout. Returns whether records may be
    /// left.
    fn drain(&mut self, rb: &mut RingBuf<MapData>, max: usize) -> Result<bool, OutputError> {
        self.clock.maybe_resample();
        let mut n = 0;
        while n < max {
            let Some(item) = rb.next() else {
                self.out.flush()?;
                return Ok(false);
            };
            n += 1;
            self.handle(&item)?;
        }
        self.out.flush()?;
        Ok(true)
    }

    fn handle(&mut self, bytes: &[u8]) -> Result<(), OutputError> {
        let ev = match decode::decode(bytes) {
            Ok(ev) => ev,
            Err(e) => {
                self.decode_errors += 1;
                debug!("dropping an undecodable {}-byte record: {e}", bytes.len());
                return Ok(());
            }
        };
        let record = match ev {
            RawEvent::Fork(f) => {
                self.counts.fork += 1;
                self.table.on_fork(&f.header, f.child_tid, f.child_tgid);
                return Ok(());
            }
            RawEvent::Exec(e) => {
                self.counts.exec += 1;
                self.table.on_exec(&e);
                self.exec_record(&e)
            }
            RawEvent::Exit(x) => {
                self.counts.exit += 1;
                if !self.print_events {
                    // No rule judges exits: without --events nobody reads the record, so skip
                    // building it (lookups and ancestry clones on every process exit).
                    self.table.on_exit(&x.header);
                    return Ok(());
                }
                // Built before the table marks the process exited, with its last identity.
                let mut rec = self.record(EventType::Exit, &x.header, None);
                rec.exit_code = Some(x.exit_code);
                self.table.on_exit(&x.header);
                rec
            }
            RawEvent::Sock(s) => {
                let event = match s.kind {
                    decode::SockKind::Listen => {
                        self.counts.listen += 1;
                        EventType::Listen
                    }
                    decode::SockKind::Connect => {
                        self.counts.connect += 1;
                        EventType::Connect
                    }
                };
                self.record(event, &s.header, Some(s.socket))
            }
        };
        self.emit(&record)
    }

    fn exec_record(&mut self, e: &ExecRaw) -> EventRecord {
        let mut rec = self.record(EventType::Exec, &e.header, None);
        rec.filename = Some(e.filename.clone());
        rec
    }

    /// An event record for the process in `h`, identity from the process table.
    fn record(&mut self, event: EventType, h: &Header, socket: Option<SocketInfo>) -> EventRecord {
        let entry = self.table.for_event(h);
        let process = ProcessInfo {
            pid: h.tgid,
            ppid: if h.ppid != 0 { h.ppid } else { entry.ppid },
            uid: h.uid,
            gid: h.gid,
            user: None,
            comm: h.comm.clone(),
            exe: entry.exe.clone(),
            argv: entry.argv.clone(),
            argv_truncated: entry.argv_truncated,
            cgroup_id: h.cgroup_id,
        };
        let ancestry = self.table.ancestry(h.tgid);
        let web_server = self.table.web_server(h.tgid);
        EventRecord {
            record_type: "event".into(),
            event,
            time: self.clock.rfc3339(h.ktime_ns),
            host: self.host.clone(),
            process: ProcessInfo {
                user: self.users.name(h.uid),
                ..process
            },
            filename: None,
            exit_code: None,
            socket,
            ancestry,
            web_server,
            pre_existing: false,
        }
    }

    /// Prints the event (with `--events`), judges it, prints the alerts.
    fn emit(&mut self, record: &EventRecord) -> Result<(), OutputError> {
        if self.print_events {
            self.out.write(record)?;
        }
        for alert in self.detector.on_event(record, self.counters.drops) {
            self.alerts += 1;
            self.out.write(&alert)?;
        }
        Ok(())
    }

    /// The `started` status record, then the start-up baseline's records: `started` first, so a
    /// reader knows the daemon is up (and how many pre-existing listeners follow) before any
    /// record it produced.
    fn start(
        &mut self,
        hooks: &AttachReport,
        listeners: &[baseline::ListeningSocket],
    ) -> Result<(), OutputError> {
        self.out
            .write(&self.status("started", hooks, Some(listeners.len())))?;
        self.baseline(listeners)?;
        self.out.flush()
    }

    /// The start-up baseline: a `listen` record with `pre_existing` for every socket of
    /// [`baseline_scan`], judged like a live one.
    fn baseline(&mut self, sockets: &[baseline::ListeningSocket]) -> Result<(), OutputError> {
        let time = clock::now_rfc3339();
        for s in sockets {
            // A listener no visible process owns (a process in another PID namespace, or one
            // whose /proc entries we may not read) is still judged: an open port nobody can
            // account for is exactly what the start-up baseline is for. It is reported with pid 0
            // and the socket creator's uid from the table.
            let owner = main_owner(&s.owners, &self.table);
            if owner.is_none() {
                info!(
                    "listening socket {} (inode {}, uid {}) has no owner we can see: reported with pid 0",
                    s.local, s.inode, s.uid
                );
            }
            let family = if s.family_v6 {
                Family::Ipv6
            } else {
                Family::Ipv4
            };
            let socket = decode::socket_info(
                family,
                Endpoint {
                    ip: s.local.ip(),
                    port: s.local.port(),
                },
                None,
            );
            let process = match owner.and_then(|pid| Some((pid, self.table.lookup(pid)?))) {
                Some((owner, e)) => ProcessInfo {
                    pid: owner,
                    ppid: e.ppid,
                    uid: e.uid,
                    gid: e.gid,
                    user: None,
                    comm: e.comm.clone(),
                    exe: e.exe.clone(),
                    argv: e.argv.clone(),
                    argv_truncated: e.argv_truncated,
                    cgroup_id: e.cgroup_id.unwrap_or(0),
                },
                None => ProcessInfo {
                    pid: owner.unwrap_or(0),
                    uid: s.uid,
                    ..ProcessInfo::default()
                },
            };
            let record = EventRecord {
                record_type: "event".into(),
                event: EventType::Listen,
                time: time.clone(),
                host: self.host.clone(),
                process: ProcessInfo {
                    user: self.users.name(process.uid),
                    ..process
                },
                filename: None,
                exit_code: None,
                socket: Some(socket),
                ancestry: owner
                    .map(|pid| self.table.ancestry(pid))
                    .unwrap_or_default(),
                web_server: owner.and_then(|pid| self.table.web_server(pid)),
                pre_existing: true,
            };
            self.emit(&record)?;
        }
        Ok(())
    }

    fn status(
        &self,
        status: &'static str,
        hooks: &AttachReport,
        pre_existing_listeners: Option<usize>,
    ) -> StatusRecord {
        let e = self.counters.errors;
        let errors = BTreeMap::from([
            ("listen", e[0]),
            ("connect", e[1]),
            ("exec", e[2]),
            ("fork", e[3]),
            ("exit", e[4]),
            ("decode", self.decode_errors),
        ]);
        StatusRecord {
            record_type: "status",
            status,
            time: clock::now_rfc3339(),
            host: self.host.clone(),
            version: env!("CARGO_PKG_VERSION"),
            hooks: hooks.clone(),
            ring_buffer_bytes: self.ring_buffer_bytes,
            policy: self.policy_source.clone(),
            events: self.counts,
            drops: self.counters.drops,
            errors,
            process_table: self.table.stats(),
            alerts: self.alerts,
            dedup: self.detector.status(),
            pre_existing_listeners,
        }
    }
}

/// The sockets that were listening at start-up; none (with a warning) when the scan fails.
fn baseline_scan() -> Vec<baseline::ListeningSocket> {
    baseline::scan_listeners().unwrap_or_else(|e| {
        warn!("start-up scan of listening sockets failed: {e}");
        Vec::new()
    })
}

/// The owner to report for a socket shared by several processes (a master and its forked
/// workers): the one whose parent is not itself an owner, lowest pid on ties.
fn main_owner(owners: &[u32], table: &ProcessTable) -> Option<u32> {
    let mut sorted = owners.to_vec();
    sorted.sort_unstable();
    sorted
        .iter()
        .copied()
        .find(|&pid| table.get(pid).is_none_or(|e| !owners.contains(&e.ppid)))
        .or_else(|| sorted.first().copied())
}

#[cfg(test)]
mod tests {
    use std::{fs, path::PathBuf};

    use monitor_common::{
        AF_INET6, ARGS_LEN, COMM_LEN, EXE_LEN, EXEC_EXE_RESOLVED, EventHeader, EventKind,
        ExecEvent, ExitEvent, FILENAME_LEN, ForkEvent, Hook, IPPROTO_TCP, SockEvent,
    };
    use serde_json::{Value, json};

    use super::*;

    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of a repr(C) wire struct without padding as bytes.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn header(kind: EventKind, tgid: u32, ppid: u32, comm: &str, ktime_ns: u64) -> EventHeader {
        let mut c = [0u8; COMM_LEN];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        EventHeader {
            kind: kind as u32,
            hook: Hook::TracepointSchedProcessExec as u32,
            ktime_ns,
            tid: tgid,
            tgid,
            ppid,
            uid: 33,
            gid: 33,
            _pad0: 0,
            cgroup_id: 4242,
            comm: c,
        }
    }

    fn exec_bytes(
        tgid: u32,
        ppid: u32,
        comm: &str,
        exe: Option<&str>,
        filename: &str,
        args: &[&str],
    ) -> Vec<u8> {
        let mut ev = ExecEvent {
            header: header(EventKind::Exec, tgid, ppid, comm, 2_000_000_000),
            old_tid: tgid,
            flags: if exe.is_some() { EXEC_EXE_RESOLVED } else { 0 },
            filename_len: filename.len() as u32,
            exe_len: exe.map_or(0, |e| e.len() as u32),
            args_len: 0,
            _pad0: 0,
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
        dir: PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    /// A pipeline over a synthetic /proc holding pid 1 and an nginx (pid 100), and a passwd
    /// file naming uid 33.
    fn fixture(name: &str, print_events: bool) -> Fixture {
        let dir =
            std::env::temp_dir().join(format!("monitor-daemon-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (pid, ppid, comm, exe, cmdline) in [
            (1u32, 0u32, "init", "/sbin/init", "/sbin/init\0"),
            (
                100,
                1,
                "nginx",
                "/usr/sbin/nginx",
                "nginx: worker process\0",
            ),
        ] {
            let d = dir.join("proc").join(pid.to_string());
            fs::create_dir_all(&d).unwrap();
            fs::write(
                d.join("stat"),
                format!("{pid} ({comm}) S {ppid} 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0"),
            )
            .unwrap();
            fs::write(
                d.join("status"),
                format!("Tgid:\t{pid}\nUid:\t33\t33\t33\t33\nGid:\t33\t33\t33\t33\n"),
            )
            .unwrap();
            fs::write(d.join("cmdline"), cmdline).unwrap();
            std::os::unix::fs::symlink(exe, d.join("exe")).unwrap();
        }
        fs::write(
            dir.join("passwd"),
            "www-data:x:33:33::/var/www:/usr/sbin/nologin\n",
        )
        .unwrap();
        let mut table = ProcessTable::new(1000, dir.join("proc"));
        table.set_web_server_classifier(Box::new(lineage::web_server_classifier(
            &Policy::embedded_default(),
        )));
        table.seed().unwrap();
        let p = Pipeline {
            print_events,
            ring_buffer_bytes: 4096,
            policy_source: "embedded default".into(),
            host: "web1".into(),
            clock: Clock::with_offset(1_795_410_000_000_000_000),
            table,
            users: UserNames::new(dir.join("passwd")),
            detector: Detector::new(Arc::new(Policy::embedded_default())),
            out: Output::new(Vec::new()),
            counts: EventCounts::default(),
            decode_errors: 0,
            alerts: 0,
            counters: Counters::default(),
        };
        Fixture { p, dir }
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

    #[test]
    fn web_shell_chain_becomes_event_records() {
        let mut f = fixture("chain", true);
        let p = &mut f.p;
        // nginx forks; the child execs sh; sh connects to an IPv4-mapped address; sh exits.
        p.handle(&bytes_of(&ForkEvent {
            header: header(EventKind::Fork, 100, 1, "nginx", 1_000_000_000),
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
            header: header(EventKind::Connect, 200, 100, "sh", 3_000_000_000),
            family: AF_INET6,
            protocol: IPPROTO_TCP,
            sport: 40000,
            dport: 4444,
            saddr: dst.octets(),
            daddr: dst.octets(),
        }))
        .unwrap();
        p.handle(&bytes_of(&ExitEvent {
            header: header(EventKind::Exit, 200, 100, "sh", 4_000_000_000),
            exit_code: 256,
            _pad0: 0,
        }))
        .unwrap();

        let ev = events(p);
        let kinds: Vec<&str> = ev.iter().map(|v| v["event"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["exec", "connect", "exit"], "fork is not printed");
        let nginx = json!({"pid":100,"exe":"/usr/sbin/nginx","comm":"nginx","argv":["nginx: worker process"]});
        let init = json!({"pid":1,"exe":"/sbin/init","comm":"init","argv":["/sbin/init"]});
        let sh = json!({"pid":200,"ppid":100,"uid":33,"gid":33,"user":"www-data","comm":"sh",
                        "exe":"/usr/bin/dash","argv":["sh","-c","id"],"cgroup_id":4242});
        assert_eq!(
            ev[0],
            json!({"type":"event","event":"exec","time":"2026-11-23T05:00:02.000000000Z","host":"web1",
                   "process":sh,"filename":"/bin/sh","socket":null,"ancestry":[nginx, init],
                   "web_server":nginx})
        );
        assert_eq!(
            ev[1],
            json!({"type":"event","event":"connect","time":"2026-11-23T05:00:03.000000000Z","host":"web1",
                   "process":sh,"socket":{"protocol":"tcp","family":"ipv6",
                        "local":{"ip":"127.0.0.1","port":40000},"remote":{"ip":"127.0.0.1","port":4444},
                        "mapped_ipv4":true},
                   "ancestry":[nginx, init],"web_server":nginx})
        );
        assert_eq!(ev[2]["exit_code"], 256);
        assert_eq!(ev[2]["process"], sh);
        let c = p.counts;
        assert_eq!(
            (c.fork, c.exec, c.connect, c.exit, c.listen),
            (1, 1, 1, 1, 0)
        );
    }

    #[test]
    fn exe_is_never_taken_from_comm() {
        let mut f = fixture("comm", true);
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
        let mut f = fixture("quiet", false);
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
        assert_eq!(f.p.counts.exec, 1);
    }

    #[test]
    fn undecodable_records_are_counted_not_fatal() {
        let mut f = fixture("bad", true);
        f.p.handle(&[1, 2, 3]).unwrap();
        let mut h = bytes_of(&header(EventKind::Exit, 1, 0, "x", 0));
        h[0] = 99;
        f.p.handle(&h).unwrap();
        assert_eq!(f.p.decode_errors, 2);
        assert!(events(&mut f.p).is_empty());
        let status =
            serde_json::to_value(f.p.status("running", &AttachReport::new(), None)).unwrap();
        assert_eq!(status["type"], "status");
        assert_eq!(status["status"], "running");
        assert_eq!(status["errors"]["decode"], 2);
        assert_eq!(
            status["events"],
            json!({"listen":0,"connect":0,"exec":0,"fork":0,"exit":0})
        );
        assert_eq!(status["process_table"]["size"], 2);
        assert_eq!(status["policy"], "embedded default");
        assert!(status.get("pre_existing_listeners").is_none());
    }

    #[test]
    fn main_owner_prefers_the_master() {
        let mut f = fixture("owner", true);
        // Workers 201 and 202 forked by master 100 share its socket.
        for child in [201, 202] {
            f.p.table.on_fork(
                &decode::Header {
                    kind: EventKind::Fork,
                    hook: None,
                    ktime_ns: 1,
                    tid: 100,
                    tgid: 100,
                    ppid: 1,
                    uid: 0,
                    gid: 0,
                    cgroup_id: 0,
                    comm: "nginx".into(),
                },
                child,
                child,
            );
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
        let mut f = fixture("start", true);
        let sockets = [baseline::ListeningSocket {
            inode: 1,
            netns: 1,
            local: "0.0.0.0:4444".parse().unwrap(),
            family_v6: false,
            uid: 33,
            owners: vec![100],
        }];
        f.p.start(&AttachReport::new(), &sockets).unwrap();
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
                ("alert", "listen")
            ]
        );
        assert_eq!(out[0]["pre_existing_listeners"], 1);
        assert_eq!(out[1]["pre_existing"], true);
        // nginx is itself the web server of its own records.
        assert_eq!(out[1]["web_server"]["pid"], 100);
    }

    #[test]
    fn double_forked_shell_keeps_its_web_server() {
        let mut f = fixture("dfork", true);
        let p = &mut f.p;
        let fork = |parent: u32, ppid: u32, comm: &str, child: u32, t: u64| {
            bytes_of(&ForkEvent {
                header: header(EventKind::Fork, parent, ppid, comm, t),
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
            header: header(EventKind::Exit, 200, 100, "nginx", 1_200_000_000),
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
