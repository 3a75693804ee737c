//! Builders the unit tests share: wire records as the kernel writes them, decoded origins,
//! event records with a web-server lineage, and a synthetic `/proc`.

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use monitor_common::{COMM_LEN, EventHeader, EventKind, Hook};

use crate::{
    decode::{self, Origin},
    record::{
        Ancestor, Endpoint, EnrichmentInfo, EventRecord, EventType, Family, LoginInfo, LoginMethod,
        ProcessInfo, Protocol, SocketInfo, SshdPids, WebServerInfo,
    },
};

/// An event time (RFC 3339, UTC).
pub const T0: &str = "2026-11-23T05:00:00.000000001Z";

/// A wire struct's bytes, as the ring buffer hands them over.
pub fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: test-only view of a repr(C) wire struct without padding as bytes; the slice lives
    // no longer than `v`.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref::<T>(v).cast::<u8>(), size_of::<T>()) }
        .to_vec()
}

/// `comm` NUL-padded to the kernel's width.
pub fn comm(s: &str) -> [u8; COMM_LEN] {
    let mut c = [0u8; COMM_LEN];
    c[..s.len()].copy_from_slice(s.as_bytes());
    c
}

/// A wire header of `kind` for process `tgid` (uid and gid 33, cgroup 4242; the effective uid
/// 33 in the kinds whose records carry it, as the kernel side writes them).
pub fn wire_header(
    kind: EventKind,
    tgid: u32,
    ppid: u32,
    comm_: &str,
    ktime_ns: u64,
) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        hook: Hook::TracepointSchedProcessExec as u32,
        ktime_ns,
        tid: tgid,
        tgid,
        ppid,
        uid: 33,
        gid: 33,
        euid: match kind {
            EventKind::Exec
            | EventKind::Listen
            | EventKind::Connect
            | EventKind::Accept
            | EventKind::Cred => 33,
            _ => monitor_common::EUID_UNKNOWN,
        },
        cgroup_id: 4242,
        comm: comm(comm_),
    }
}

/// A decoded origin for process `tgid` (a fork by default; uid, euid and gid 33, cgroup 9).
pub fn origin(tgid: u32, ppid: u32, comm: &str, ktime_ns: u64) -> Origin {
    Origin {
        kind: EventKind::Fork,
        hook: None,
        ktime_ns,
        tid: tgid,
        tgid,
        ppid,
        uid: 33,
        gid: 33,
        euid: Some(33),
        cgroup_id: 9,
        comm: comm.into(),
    }
}

/// A decoded exec of `exe` (also the filename) with `argv`.
pub fn exec(
    tgid: u32,
    ppid: u32,
    comm: &str,
    exe: &str,
    argv: &[&str],
    ktime_ns: u64,
) -> decode::Exec {
    let mut origin = origin(tgid, ppid, comm, ktime_ns);
    origin.kind = EventKind::Exec;
    decode::Exec {
        origin,
        old_tid: tgid,
        filename: exe.into(),
        filename_truncated: false,
        exe: Some(exe.into()),
        exe_truncated: false,
        argv: strings(argv),
        argv_truncated: false,
        file: None,
    }
}

pub fn strings(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|s| (*s).to_owned()).collect()
}

pub fn ancestor(pid: u32, exe: &str, comm: &str, argv: &[&str]) -> Ancestor {
    Ancestor {
        pid,
        exe: Some(exe.to_owned()),
        comm: comm.to_owned(),
        argv: strings(argv),
    }
}

pub fn fpm_master() -> Ancestor {
    ancestor(
        900,
        "/usr/sbin/php-fpm8.2",
        "php-fpm8.2",
        &["php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)"],
    )
}

pub fn fpm_worker() -> Ancestor {
    ancestor(
        901,
        "/usr/sbin/php-fpm8.2",
        "php-fpm8.2",
        &["php-fpm: pool www"],
    )
}

pub fn systemd() -> Ancestor {
    ancestor(1, "/usr/lib/systemd/systemd", "systemd", &["/sbin/init"])
}

/// A process running as www-data (uid 33).
pub fn process(pid: u32, exe: &str, comm: &str, argv: &[&str]) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid: 0,
        uid: 1000,
        euid: Some(1000),
        gid: 1000,
        user: Some("app".to_owned()),
        comm: comm.to_owned(),
        exe: Some(exe.to_owned()),
        argv: strings(argv),
        argv_truncated: false,
        cgroup_id: 1,
    }
}

pub fn python() -> ProcessInfo {
    process(
        4000,
        "/usr/bin/python3.11",
        "python3",
        &["python3", "-m", "http.server", "4444"],
    )
}

/// An event on host `web1`; `ppid` is the first ancestor's.
pub fn event(
    kind: EventType,
    time: &str,
    mut process: ProcessInfo,
    ancestry: Vec<Ancestor>,
) -> EventRecord {
    process.ppid = ancestry.first().map_or(0, |a| a.pid);
    let mut ev = EventRecord::new(kind, time.to_owned(), "web1".to_owned(), process);
    ev.ancestry = ancestry.into();
    ev
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn family(ip: IpAddr) -> Family {
    if ip.is_ipv4() {
        Family::Ipv4
    } else {
        Family::Ipv6
    }
}

/// A listen on `local:port` under systemd.
pub fn listen(time: &str, process: ProcessInfo, local: &str, port: u16) -> EventRecord {
    let mut ev = event(EventType::Listen, time, process, vec![systemd()]);
    let local = ip(local);
    ev.socket = Some(SocketInfo {
        protocol: Protocol::Tcp,
        family: family(local),
        local: Endpoint { ip: local, port },
        remote: None,
        mapped_ipv4: false,
    });
    ev
}

/// [`listen`] for a UDP socket bound to `local:port` (an open UDP port).
pub fn udp_listen(time: &str, process: ProcessInfo, local: &str, port: u16) -> EventRecord {
    let mut ev = listen(time, process, local, port);
    if let Some(socket) = ev.socket.as_mut() {
        socket.protocol = Protocol::Udp;
    }
    ev
}

/// A connect to `dst:port` from 10.0.0.5:40000 (or `2001:db8::5`).
pub fn connect(
    time: &str,
    process: ProcessInfo,
    ancestry: Vec<Ancestor>,
    dst: &str,
    port: u16,
) -> EventRecord {
    let mut ev = event(EventType::Connect, time, process, ancestry);
    let dst = ip(dst);
    let local = if dst.is_ipv4() {
        ip("10.0.0.5")
    } else {
        ip("2001:db8::5")
    };
    ev.socket = Some(SocketInfo {
        protocol: Protocol::Tcp,
        family: family(dst),
        local: Endpoint {
            ip: local,
            port: 40000,
        },
        remote: Some(Endpoint { ip: dst, port }),
        mapped_ipv4: false,
    });
    ev
}

/// alice's publickey login from `remote` (port 50000) to 10.77.0.1:22, running `bash -c id`
/// under sshd, with `enrichment` on its address.
pub fn login(time: &str, remote: &str, enrichment: EnrichmentInfo) -> EventRecord {
    let sshd = ancestor(200, "/usr/sbin/sshd", "sshd", &["sshd: alice [priv]"]);
    let mut process = process(203, "/usr/bin/bash", "bash", &["bash", "-c", "id"]);
    process.uid = 1001;
    process.user = Some("alice".to_owned());
    let mut ev = event(EventType::Login, time, process, vec![sshd, systemd()]);
    let remote = Endpoint {
        ip: ip(remote),
        port: 50_000,
    };
    let local = Endpoint {
        ip: ip("10.77.0.1"),
        port: 22,
    };
    ev.socket = Some(SocketInfo {
        protocol: Protocol::Tcp,
        family: family(remote.ip),
        local,
        remote: Some(remote),
        mapped_ipv4: false,
    });
    ev.login = Some(LoginInfo {
        user: Some("alice".to_owned()),
        uid: 1001,
        remote,
        local,
        sshd: SshdPids {
            listener: 100,
            session: 200,
        },
        command: Some(strings(&["bash", "-c", "id"])),
        tty: None,
        method: LoginMethod::Publickey,
    });
    ev.enrichment = Some(enrichment);
    ev
}

/// A recorded `web_server` value.
pub fn tracked(pid: u32, exe: &str, filename: Option<&str>, argv: &[&str]) -> WebServerInfo {
    WebServerInfo {
        pid,
        exe: Some(exe.to_owned()),
        filename: filename.map(str::to_owned),
        comm: "x".to_owned(),
        argv: strings(argv),
        matched: None,
    }
}

/// A scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "monitor-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes a synthetic `/proc/<pid>` (uid 1000, gid 100, started at `start` clock ticks).
pub fn fake_proc(
    root: &Path,
    pid: u32,
    ppid: u32,
    comm: &str,
    exe: Option<&str>,
    argv: &[&str],
    start: u64,
) {
    let d = root.join(pid.to_string());
    fs::create_dir_all(&d).unwrap();
    fs::write(
        d.join("stat"),
        format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {start} 100 200 1"),
    )
    .unwrap();
    fs::write(
        d.join("status"),
        format!("Name:\t{comm}\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{ppid}\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\n"),
    )
    .unwrap();
    let mut cmdline = Vec::new();
    for a in argv {
        cmdline.extend_from_slice(a.as_bytes());
        cmdline.push(0);
    }
    fs::write(d.join("cmdline"), cmdline).unwrap();
    if let Some(exe) = exe {
        std::os::unix::fs::symlink(exe, d.join("exe")).unwrap();
    }
}

/// A detector running the embedded default policy.
pub fn detector() -> crate::detect::Detector {
    crate::detect::Detector::new(std::sync::Arc::new(
        crate::policy::Policy::embedded_default(),
    ))
}

/// A detector running the default policy changed by `text`.
pub fn detector_with(text: &str) -> crate::detect::Detector {
    let policy =
        crate::policy::Policy::from_toml_str(text, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    crate::detect::Detector::new(std::sync::Arc::new(policy))
}

/// A `running` status record with nothing counted.
pub fn status_record() -> crate::record::StatusRecord {
    use crate::{
        probes::Counters,
        record::{DedupStatus, Status, TableStats},
        status::{Board, Now},
    };
    Board::default().record(
        Status::Running,
        Now {
            time: T0.to_owned(),
            host: "web1",
            kernel: &Counters::default(),
            table: TableStats {
                size: 0,
                capacity: 1,
                evicted: 0,
            },
            dedup: DedupStatus::default(),
            ssh_sessions: 0,
            output: crate::record::OutputStatus::default(),
            reload: None,
        },
        None,
    )
}
