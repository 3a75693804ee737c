//! Ring-buffer bytes → typed events.
//!
//! The kernel side writes `monitor_common` wire structs; here every record is length-checked
//! before it is read with `ptr::read_unaligned` (ring-buffer items are only 8-byte aligned, and a
//! short or foreign record must never be read past its end). Nothing in this module trusts a
//! length the kernel wrote: every `*_len` field is clamped to its array.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use monitor_common::{
    AF_INET, AF_INET6, ARGS_LEN, CredEvent, EUID_UNKNOWN, EXE_LEN, EXEC_ARGS_TRUNCATED,
    EXEC_EXE_FILE_ID, EXEC_EXE_RESOLVED, EXEC_FILENAME_TRUNCATED, EventHeader, EventKind,
    ExecEvent, ExitEvent, FILENAME_LEN, ForkEvent, Hook, IPPROTO_TCP, IPPROTO_UDP, PamCall,
    PamEvent, SetsidEvent, SockEvent,
};

use crate::record::{self, Endpoint, Family, Protocol, SocketInfo};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than {need} bytes ({what})")]
    Short {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("unknown address family {0} in a socket event")]
    UnknownFamily(u16),
    #[error("unsupported protocol {0} in a socket event")]
    UnknownProtocol(u16),
    #[error("unknown libpam call {0} in a pam event")]
    UnknownPamCall(u32),
}

/// Who caused an event and when: the wire [`EventHeader`], decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub kind: EventKind,
    /// `None` when the kernel side wrote a hook number this daemon does not know.
    pub hook: Option<Hook>,
    /// `CLOCK_BOOTTIME` nanoseconds.
    pub ktime_ns: u64,
    pub tid: u32,
    pub tgid: u32,
    /// 0 when the kernel side could not read it.
    pub ppid: u32,
    /// Real uid and gid.
    pub uid: u32,
    pub gid: u32,
    /// Effective uid, for the kinds whose records carry it (exec, listen, connect, accept, cred)
    /// when the kernel side could read it.
    pub euid: Option<u32>,
    pub cgroup_id: u64,
    pub comm: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockKind {
    Listen,
    Connect,
    /// An inbound connection accepted: local is the listening side, remote the client.
    Accept,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sock {
    pub origin: Origin,
    pub kind: SockKind,
    pub socket: SocketInfo,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    pub origin: Origin,
    pub old_tid: u32,
    /// The path the kernel executed (`bprm->filename`).
    pub filename: String,
    pub filename_truncated: bool,
    /// `mm->exe_file` when the kernel side resolved it; when `exe_truncated`, the end of the path
    /// after [`TRUNCATED_MARK`] (never a complete absolute path).
    pub exe: Option<String>,
    pub exe_truncated: bool,
    /// First [`record::ARGV_MAX`] arguments.
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    /// The executable file's identity as the kernel has it (`mm->exe_file->f_inode`), `None`
    /// when the kernel side could not read it.
    pub file: Option<FileId>,
}

/// Which file an executable is, from its inode: what content identity
/// ([`crate::identity`]) is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    /// The device, in `stat(2)`'s `st_dev` encoding (converted from the kernel's `s_dev` by
    /// [`stat_dev`]). It is the filesystem's own device: where `stat` reports another one
    /// (a btrfs subvolume's anonymous device, overlayfs' per-layer devices) the two differ.
    pub dev: u64,
    pub ino: u64,
    /// `i_size`, bytes.
    pub size: u64,
    /// Last modification, seconds and nanoseconds since the epoch.
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fork {
    /// Describes the parent.
    pub origin: Origin,
    pub child_tid: u32,
    /// 0 when the kernel side could not read it.
    pub child_tgid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    pub origin: Origin,
    pub exit_code: u32,
}

/// The real uid of a process changed (a successful setuid, setreuid or setresuid); the origin
/// carries the new uid and gid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cred {
    pub origin: Origin,
    /// The real uid before the call; `None` when the kernel side did not see the call's entry.
    pub old_uid: Option<u32>,
}

/// A process became the leader of a new session (`setsid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setsid {
    pub origin: Origin,
    pub sid: u32,
}

/// A libpam call returned in a watched SSH server process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pam {
    pub origin: Origin,
    pub call: PamCall,
    /// `PAM_SUCCESS` is 0.
    pub ret: i32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum KernelEvent {
    Sock(Sock),
    Exec(Exec),
    Fork(Fork),
    Exit(Exit),
    Cred(Cred),
    Pam(Pam),
    Setsid(Setsid),
}

impl KernelEvent {
    pub fn origin(&self) -> &Origin {
        match self {
            Self::Sock(e) => &e.origin,
            Self::Exec(e) => &e.origin,
            Self::Fork(e) => &e.origin,
            Self::Exit(e) => &e.origin,
            Self::Cred(e) => &e.origin,
            Self::Pam(e) => &e.origin,
            Self::Setsid(e) => &e.origin,
        }
    }
}

/// Reads a `T` from the start of `buf` after checking that it is long enough.
fn read<T: Copy>(buf: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if buf.len() < need {
        return Err(DecodeError::Short {
            what,
            len: buf.len(),
            need,
        });
    }
    // SAFETY: `buf` holds at least `size_of::<T>()` bytes (checked above), `read_unaligned` has no
    // alignment requirement, and every `T` used here is a repr(C) wire struct made only of integers
    // and byte arrays, so any bit pattern is a valid value.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// The wire bytes of a socket record read from a map rather than the ring buffer (a listen the
/// daemon sends itself), for [`decode`].
pub fn sock_event_bytes(event: &SockEvent) -> &[u8] {
    // SAFETY: SockEvent is a repr(C) struct of integers and byte arrays whose size is asserted to
    // be the sum of its fields (no padding byte is left uninitialized); the slice borrows `event`.
    unsafe {
        std::slice::from_raw_parts(
            std::ptr::from_ref(event).cast::<u8>(),
            size_of::<SockEvent>(),
        )
    }
}

/// Decodes one ring-buffer item.
pub fn decode(buf: &[u8]) -> Result<KernelEvent, DecodeError> {
    let raw: EventHeader = read(buf, "event header")?;
    let kind = EventKind::try_from(raw.kind).map_err(DecodeError::UnknownKind)?;
    let origin = decode_origin(&raw, kind);
    Ok(match kind {
        EventKind::Listen | EventKind::Connect | EventKind::Accept => {
            let ev: SockEvent = read(buf, "socket event")?;
            let sock_kind = match kind {
                EventKind::Listen => SockKind::Listen,
                EventKind::Connect => SockKind::Connect,
                _ => SockKind::Accept,
            };
            KernelEvent::Sock(Sock {
                origin,
                kind: sock_kind,
                socket: decode_socket(&ev, sock_kind)?,
            })
        }
        EventKind::Exec => {
            let ev: ExecEvent = read(buf, "exec event")?;
            KernelEvent::Exec(decode_exec(&ev, origin))
        }
        EventKind::Fork => {
            let ev: ForkEvent = read(buf, "fork event")?;
            KernelEvent::Fork(Fork {
                origin,
                child_tid: ev.child_tid,
                child_tgid: ev.child_tgid,
            })
        }
        EventKind::Exit => {
            let ev: ExitEvent = read(buf, "exit event")?;
            KernelEvent::Exit(Exit {
                origin,
                exit_code: ev.exit_code,
            })
        }
        EventKind::Cred => {
            let ev: CredEvent = read(buf, "cred event")?;
            KernelEvent::Cred(Cred {
                origin,
                old_uid: (ev.old_uid != u32::MAX).then_some(ev.old_uid),
            })
        }
        EventKind::Setsid => {
            let ev: SetsidEvent = read(buf, "setsid event")?;
            KernelEvent::Setsid(Setsid {
                origin,
                sid: ev.sid,
            })
        }
        EventKind::Pam => {
            let ev: PamEvent = read(buf, "pam event")?;
            KernelEvent::Pam(Pam {
                origin,
                call: PamCall::try_from(ev.call).map_err(DecodeError::UnknownPamCall)?,
                ret: ev.ret,
            })
        }
    })
}

fn decode_origin(raw: &EventHeader, kind: EventKind) -> Origin {
    Origin {
        kind,
        hook: Hook::try_from(raw.hook).ok(),
        ktime_ns: raw.ktime_ns,
        tid: raw.tid,
        tgid: raw.tgid,
        ppid: raw.ppid,
        uid: raw.uid,
        gid: raw.gid,
        euid: (raw.euid != EUID_UNKNOWN).then_some(raw.euid),
        cgroup_id: raw.cgroup_id,
        comm: cstr_lossy(&raw.comm),
    }
}

/// A socket record's addresses. TCP for every kind; UDP for connects (a UDP connect(2) or a send
/// naming a destination) and listens (a UDP socket bound to a port of its choosing), with the
/// same layout. UDP accepts a connectionless protocol has none of.
fn decode_socket(ev: &SockEvent, kind: SockKind) -> Result<SocketInfo, DecodeError> {
    let protocol = match (ev.protocol, kind) {
        (IPPROTO_TCP, _) => Protocol::Tcp,
        (IPPROTO_UDP, SockKind::Connect | SockKind::Listen) => Protocol::Udp,
        (other, _) => return Err(DecodeError::UnknownProtocol(other)),
    };
    let (family, local_ip, remote_ip) = match ev.family {
        AF_INET => (
            Family::Ipv4,
            IpAddr::V4(ipv4(&ev.saddr)),
            IpAddr::V4(ipv4(&ev.daddr)),
        ),
        AF_INET6 => (
            Family::Ipv6,
            IpAddr::V6(Ipv6Addr::from(ev.saddr)),
            IpAddr::V6(Ipv6Addr::from(ev.daddr)),
        ),
        other => return Err(DecodeError::UnknownFamily(other)),
    };
    let local = Endpoint {
        ip: local_ip,
        port: ev.sport,
    };
    let remote = match kind {
        SockKind::Listen => None,
        SockKind::Connect | SockKind::Accept => Some(Endpoint {
            ip: remote_ip,
            port: ev.dport,
        }),
    };
    Ok(socket_info(protocol, family, local, remote))
}

/// Builds a [`SocketInfo`], writing IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as plain IPv4.
///
/// `mapped_ipv4` is set when the destination (connect) or the bound address (listen) is mapped:
/// an `AF_INET6` socket talking IPv4 uses mapped addresses on both ends, and rules written against
/// IPv4 ranges must match it. Shared with the start-up baseline, which sees the same addresses in
/// `/proc/net/tcp6` and `udp6`.
pub fn socket_info(
    protocol: Protocol,
    family: Family,
    local: Endpoint,
    remote: Option<Endpoint>,
) -> SocketInfo {
    let unmap = |e: Endpoint| match e.ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (
                Endpoint {
                    ip: IpAddr::V4(v4),
                    port: e.port,
                },
                true,
            ),
            None => (e, false),
        },
        IpAddr::V4(_) => (e, false),
    };
    let (local, local_mapped) = unmap(local);
    let (remote, remote_mapped) = match remote.map(unmap) {
        Some((r, m)) => (Some(r), m),
        None => (None, false),
    };
    let mapped_ipv4 = family == Family::Ipv6
        && if remote.is_some() {
            remote_mapped
        } else {
            local_mapped
        };
    SocketInfo {
        protocol,
        family,
        local,
        remote,
        mapped_ipv4,
    }
}

fn ipv4(addr: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])
}

/// Put before an exe path the kernel side could not give whole (`Exec::exe_truncated`).
pub const TRUNCATED_MARK: &str = "…";

fn decode_exec(ev: &ExecEvent, origin: Origin) -> Exec {
    let filename = cstr_lossy(clamp(&ev.filename, ev.filename_len, FILENAME_LEN));
    let exe_truncated = ev.flags & monitor_common::EXEC_EXE_TRUNCATED != 0;
    let exe = if ev.flags & EXEC_EXE_RESOLVED != 0 {
        Some(cstr_lossy(clamp(&ev.exe, ev.exe_len, EXE_LEN)))
            .filter(|s| !s.is_empty())
            // A cut path is the TAIL of the real one (the kernel side keeps the binary's name),
            // or a walk that gave up before the root: the mark keeps it from ever passing for a
            // complete absolute path. The process table prefers /proc/<pid>/exe for it.
            .map(|s| {
                if exe_truncated {
                    format!("{TRUNCATED_MARK}{s}")
                } else {
                    s
                }
            })
    } else {
        None
    };
    let (argv, cut) = split_args(clamp(&ev.args, ev.args_len, ARGS_LEN));
    Exec {
        origin,
        old_tid: ev.old_tid,
        filename,
        filename_truncated: ev.flags & EXEC_FILENAME_TRUNCATED != 0,
        exe,
        exe_truncated,
        argv,
        argv_truncated: cut || ev.flags & EXEC_ARGS_TRUNCATED != 0,
        file: (ev.flags & EXEC_EXE_FILE_ID != 0).then(|| FileId {
            dev: stat_dev(ev.exe_dev),
            ino: ev.exe_ino,
            size: ev.exe_size,
            mtime_sec: ev.exe_mtime_sec,
            mtime_nsec: ev.exe_mtime_nsec,
        }),
    }
}

/// The kernel's internal `dev_t` (`MINORBITS` = 20: major above, minor in the low 20 bits, as
/// `sb->s_dev` holds it) in the encoding `stat(2)` reports as `st_dev` (glibc's `makedev`, what
/// `new_encode_dev()` produces for userspace).
pub fn stat_dev(kernel_dev: u32) -> u64 {
    libc::makedev(kernel_dev >> 20, kernel_dev & 0xf_ffff)
}

/// The first `len` bytes of `buf`, never more than `max` or the array itself.
fn clamp(buf: &[u8], len: u32, max: usize) -> &[u8] {
    let n = usize::try_from(len)
        .unwrap_or(usize::MAX)
        .min(max)
        .min(buf.len());
    &buf[..n]
}

/// Text up to the first NUL (kernel strings may carry their terminator inside the length), lossy
/// UTF-8.
fn cstr_lossy(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Splits NUL-separated arguments (the `/proc/<pid>/cmdline` layout) into at most
/// [`record::ARGV_MAX`] strings (lossy UTF-8). Returns whether arguments were dropped.
///
/// One trailing NUL terminates the last argument; empty arguments in between are kept (`argv`
/// may legitimately contain `""`).
pub fn split_args(bytes: &[u8]) -> (Vec<String>, bool) {
    if bytes.is_empty() {
        return (Vec::new(), false);
    }
    let body = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    let mut argv = Vec::new();
    let mut truncated = false;
    for arg in body.split(|&b| b == 0) {
        if argv.len() == record::ARGV_MAX {
            truncated = true;
            break;
        }
        argv.push(String::from_utf8_lossy(arg).into_owned());
    }
    (argv, truncated)
}

#[cfg(test)]
mod tests {
    use monitor_common::{COMM_LEN, EXEC_EXE_TRUNCATED};

    use super::*;

    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of a repr(C) wire struct without padding as bytes.
        unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref::<T>(v).cast::<u8>(), size_of::<T>())
        }
        .to_vec()
    }

    fn comm(s: &str) -> [u8; COMM_LEN] {
        let mut c = [0u8; COMM_LEN];
        c[..s.len()].copy_from_slice(s.as_bytes());
        c
    }

    fn header(kind: EventKind) -> EventHeader {
        EventHeader {
            kind: kind as u32,
            hook: Hook::TracepointInetSockSetState as u32,
            ktime_ns: 123_456_789_012,
            tid: 4243,
            tgid: 4242,
            ppid: 1,
            uid: 1000,
            gid: 100,
            euid: EUID_UNKNOWN,
            cgroup_id: 77,
            comm: comm("python3"),
        }
    }

    fn sock(kind: EventKind, family: u16, saddr: [u8; 16], daddr: [u8; 16]) -> SockEvent {
        SockEvent {
            header: header(kind),
            family,
            protocol: IPPROTO_TCP,
            sport: 4444,
            dport: 80,
            saddr,
            daddr,
        }
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&a);
        b
    }

    #[test]
    fn a_socket_record_read_from_a_map_decodes_like_one_from_the_ring() {
        let ev = sock(
            EventKind::Listen,
            AF_INET,
            v4([0, 0, 0, 0]),
            v4([0, 0, 0, 0]),
        );
        assert_eq!(sock_event_bytes(&ev), bytes_of(&ev).as_slice());
        let KernelEvent::Sock(s) = decode(sock_event_bytes(&ev)).expect("decodes") else {
            panic!("not a socket record");
        };
        assert_eq!(s.kind, SockKind::Listen);
        assert_eq!(s.socket.local.port, 4444);
    }

    fn exec_event(args: &[u8], flags: u32) -> ExecEvent {
        let mut ev = ExecEvent {
            header: header(EventKind::Exec),
            old_tid: 4242,
            flags,
            filename_len: 0,
            exe_len: 0,
            args_len: args.len() as u32,
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
        ev.args[..args.len()].copy_from_slice(args);
        let f = b"/usr/bin/python3";
        ev.filename[..f.len()].copy_from_slice(f);
        ev.filename_len = f.len() as u32 + 1; // bpf_probe_read_str counts the NUL
        let e = b"/usr/bin/python3.11";
        ev.exe[..e.len()].copy_from_slice(e);
        ev.exe_len = e.len() as u32;
        ev
    }

    #[test]
    fn header_fields_decode_exactly() {
        let ev = ForkEvent {
            header: header(EventKind::Fork),
            child_tid: 5000,
            child_tgid: 5000,
        };
        let got = decode(&bytes_of(&ev)).expect("decodes");
        assert_eq!(
            got,
            KernelEvent::Fork(Fork {
                origin: Origin {
                    kind: EventKind::Fork,
                    hook: Some(Hook::TracepointInetSockSetState),
                    ktime_ns: 123_456_789_012,
                    tid: 4243,
                    tgid: 4242,
                    ppid: 1,
                    uid: 1000,
                    gid: 100,
                    euid: None,
                    cgroup_id: 77,
                    comm: "python3".into(),
                },
                child_tid: 5000,
                child_tgid: 5000,
            })
        );
    }

    #[test]
    fn full_length_comm_without_nul() {
        let mut h = header(EventKind::Exit);
        h.comm = *b"abcdefghijklmnop";
        let ev = ExitEvent {
            header: h,
            exit_code: 256,
            _pad0: 0,
        };
        let KernelEvent::Exit(e) = decode(&bytes_of(&ev)).unwrap() else {
            panic!("not an exit")
        };
        assert_eq!(e.origin.comm, "abcdefghijklmnop");
        assert_eq!(e.exit_code, 256);
    }

    #[test]
    fn short_buffers_rejected() {
        assert_eq!(
            decode(&[]),
            Err(DecodeError::Short {
                what: "event header",
                len: 0,
                need: 64
            })
        );
        let full = bytes_of(&sock(
            EventKind::Listen,
            AF_INET,
            v4([127, 0, 0, 1]),
            [0; 16],
        ));
        for len in [1, 63, 64, 103] {
            assert!(
                matches!(decode(&full[..len]), Err(DecodeError::Short { len: l, .. }) if l == len),
                "len {len}"
            );
        }
        let exec = bytes_of(&exec_event(b"a\0", 0));
        assert!(matches!(
            decode(&exec[..exec.len() - 1]),
            Err(DecodeError::Short {
                what: "exec event",
                ..
            })
        ));
        let exit = bytes_of(&ExitEvent {
            header: header(EventKind::Exit),
            exit_code: 0,
            _pad0: 0,
        });
        assert!(matches!(
            decode(&exit[..70]),
            Err(DecodeError::Short { .. })
        ));
    }

    #[test]
    fn unknown_kind_rejected() {
        for kind in [0u32, 10, 0xffff_ffff] {
            let mut h = header(EventKind::Listen);
            h.kind = kind;
            assert_eq!(decode(&bytes_of(&h)), Err(DecodeError::UnknownKind(kind)));
        }
    }

    #[test]
    fn unknown_hook_is_not_fatal() {
        let mut ev = sock(EventKind::Listen, AF_INET, v4([0, 0, 0, 0]), [0; 16]);
        ev.header.hook = 99;
        let KernelEvent::Sock(s) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(s.origin.hook, None);
    }

    #[test]
    fn bad_family_and_protocol_rejected() {
        let ev = sock(EventKind::Listen, 1, [0; 16], [0; 16]);
        assert_eq!(decode(&bytes_of(&ev)), Err(DecodeError::UnknownFamily(1)));
        // UDP is a connect (a destination) or a listen (an open port); a UDP accept is not ours.
        let mut ev = sock(EventKind::Accept, AF_INET, [0; 16], [0; 16]);
        ev.protocol = IPPROTO_UDP;
        assert_eq!(
            decode(&bytes_of(&ev)),
            Err(DecodeError::UnknownProtocol(17))
        );
        let mut ev = sock(EventKind::Connect, AF_INET, [0; 16], [0; 16]);
        ev.protocol = 132; // SCTP
        assert_eq!(
            decode(&bytes_of(&ev)),
            Err(DecodeError::UnknownProtocol(132))
        );
    }

    #[test]
    fn udp_connects_decode_like_tcp_ones_with_protocol_udp() {
        let mut ev = sock(
            EventKind::Connect,
            AF_INET,
            v4([0, 0, 0, 0]),
            v4([127, 0, 0, 1]),
        );
        ev.protocol = IPPROTO_UDP;
        ev.header.hook = Hook::TracepointSysEnterSendto as u32;
        ev.sport = 0;
        ev.dport = 9999;
        let KernelEvent::Sock(s) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(s.kind, SockKind::Connect);
        assert_eq!(s.origin.hook, Some(Hook::TracepointSysEnterSendto));
        assert_eq!(
            serde_json::to_value(&s.socket).unwrap(),
            serde_json::json!({"protocol":"udp","family":"ipv4",
                "local":{"ip":"0.0.0.0","port":0},
                "remote":{"ip":"127.0.0.1","port":9999}})
        );
        // The same record over TCP differs only in the protocol.
        ev.protocol = IPPROTO_TCP;
        let KernelEvent::Sock(t) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(
            t.socket,
            SocketInfo {
                protocol: Protocol::Tcp,
                ..s.socket
            }
        );

        // IPv6, and an IPv4 destination on an IPv6 socket (mapped), as for TCP.
        let src: Ipv6Addr = "::1".parse().unwrap();
        let dst: Ipv6Addr = "::1".parse().unwrap();
        let mut ev = sock(EventKind::Connect, AF_INET6, src.octets(), dst.octets());
        ev.protocol = IPPROTO_UDP;
        ev.header.hook = Hook::TracepointSysEnterConnect as u32;
        let KernelEvent::Sock(s) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(s.origin.hook, Some(Hook::TracepointSysEnterConnect));
        assert_eq!(s.socket.protocol, Protocol::Udp);
        assert_eq!(s.socket.family, Family::Ipv6);
        assert_eq!(s.socket.remote.unwrap().ip, IpAddr::V6(dst));
        assert!(!s.socket.mapped_ipv4);
        let mapped: Ipv6Addr = "::ffff:10.0.0.7".parse().unwrap();
        let mut ev = sock(EventKind::Connect, AF_INET6, [0; 16], mapped.octets());
        ev.protocol = IPPROTO_UDP;
        let KernelEvent::Sock(s) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(
            serde_json::to_value(&s.socket).unwrap(),
            serde_json::json!({"protocol":"udp","family":"ipv6",
                "local":{"ip":"::","port":4444},
                "remote":{"ip":"10.0.0.7","port":80},"mapped_ipv4":true})
        );
    }

    #[test]
    fn udp_hooks_decode() {
        for (n, hook) in [
            (11, Hook::TracepointSysEnterConnect),
            (12, Hook::TracepointSysEnterSendto),
            (13, Hook::TracepointSysEnterSendmsg),
            (14, Hook::TracepointSysEnterSendmmsg),
            (15, Hook::TracepointSysExitBind),
        ] {
            assert_eq!(Hook::try_from(n), Ok(hook));
        }
        assert_eq!(Hook::try_from(16), Err(16));
    }

    #[test]
    fn udp_listens_decode_with_protocol_udp_and_no_remote() {
        // What bind_sys_exit_bind writes for python3 binding 0.0.0.0:31337 (a destination left
        // zero), and for an IPv6 socket bound to ::ffff:10.1.2.3:5353.
        let mut ev = sock(EventKind::Listen, AF_INET, [0; 16], [0; 16]);
        ev.protocol = IPPROTO_UDP;
        ev.header.hook = Hook::TracepointSysExitBind as u32;
        ev.sport = 31337;
        ev.dport = 0;
        let KernelEvent::Sock(s) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(s.kind, SockKind::Listen);
        assert_eq!(s.origin.hook, Some(Hook::TracepointSysExitBind));
        assert_eq!(
            serde_json::to_value(&s.socket).unwrap(),
            serde_json::json!({"protocol":"udp","family":"ipv4",
                "local":{"ip":"0.0.0.0","port":31337},"remote":null})
        );
        let mapped: Ipv6Addr = "::ffff:10.1.2.3".parse().unwrap();
        let mut ev = sock(EventKind::Listen, AF_INET6, mapped.octets(), [0; 16]);
        ev.protocol = IPPROTO_UDP;
        ev.sport = 5353;
        let KernelEvent::Sock(s) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(
            serde_json::to_value(&s.socket).unwrap(),
            serde_json::json!({"protocol":"udp","family":"ipv6",
                "local":{"ip":"10.1.2.3","port":5353},"remote":null,"mapped_ipv4":true})
        );
    }

    #[test]
    fn ipv4_listen_has_no_remote() {
        let ev = sock(
            EventKind::Listen,
            AF_INET,
            v4([127, 0, 0, 1]),
            v4([9, 9, 9, 9]),
        );
        let KernelEvent::Sock(s) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(s.kind, SockKind::Listen);
        assert_eq!(
            s.socket,
            SocketInfo {
                protocol: Protocol::Tcp,
                family: Family::Ipv4,
                local: Endpoint {
                    ip: "127.0.0.1".parse().unwrap(),
                    port: 4444
                },
                remote: None,
                mapped_ipv4: false,
            }
        );
        let json = serde_json::to_value(&s.socket).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"protocol":"tcp","family":"ipv4",
                "local":{"ip":"127.0.0.1","port":4444},"remote":null})
        );
    }

    #[test]
    fn ipv4_connect() {
        let ev = sock(
            EventKind::Connect,
            AF_INET,
            v4([10, 0, 0, 2]),
            v4([192, 168, 1, 20]),
        );
        let KernelEvent::Sock(s) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(s.kind, SockKind::Connect);
        assert_eq!(s.socket.local.ip, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            s.socket.remote,
            Some(Endpoint {
                ip: "192.168.1.20".parse().unwrap(),
                port: 80
            })
        );
        assert!(!s.socket.mapped_ipv4);
    }

    #[test]
    fn ipv6_connect_plain() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::5".parse().unwrap();
        let ev = sock(EventKind::Connect, AF_INET6, src.octets(), dst.octets());
        let KernelEvent::Sock(s) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(s.socket.family, Family::Ipv6);
        assert_eq!(s.socket.local.ip, IpAddr::V6(src));
        assert_eq!(s.socket.remote.unwrap().ip, IpAddr::V6(dst));
        assert!(!s.socket.mapped_ipv4);
    }

    #[test]
    fn ipv4_mapped_connect_written_as_ipv4() {
        let src: Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        let dst: Ipv6Addr = "::ffff:127.0.0.2".parse().unwrap();
        let ev = sock(EventKind::Connect, AF_INET6, src.octets(), dst.octets());
        let KernelEvent::Sock(s) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(
            serde_json::to_value(&s.socket).unwrap(),
            serde_json::json!({"protocol":"tcp","family":"ipv6",
                "local":{"ip":"127.0.0.1","port":4444},
                "remote":{"ip":"127.0.0.2","port":80},"mapped_ipv4":true})
        );
    }

    #[test]
    fn ipv6_any_listen_is_not_mapped() {
        let ev = sock(EventKind::Listen, AF_INET6, [0; 16], [0; 16]);
        let KernelEvent::Sock(s) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(s.socket.local.ip, "::".parse::<IpAddr>().unwrap());
        assert!(!s.socket.mapped_ipv4);
        // ::ffff:0.0.0.0 and ::1 are not the same thing as a mapped address either.
        assert!(Ipv6Addr::LOCALHOST.to_ipv4_mapped().is_none());
    }

    #[test]
    fn ipv4_mapped_listen() {
        let src: Ipv6Addr = "::ffff:10.1.2.3".parse().unwrap();
        let ev = sock(EventKind::Listen, AF_INET6, src.octets(), [0; 16]);
        let KernelEvent::Sock(s) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(s.socket.local.ip, "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(s.socket.family, Family::Ipv6);
        assert!(s.socket.mapped_ipv4);
    }

    #[test]
    fn exec_fields_decode_exactly() {
        let ev = exec_event(b"python3\0-m\0http.server\0\x004444\0", EXEC_EXE_RESOLVED);
        let KernelEvent::Exec(e) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(e.filename, "/usr/bin/python3");
        assert_eq!(e.exe.as_deref(), Some("/usr/bin/python3.11"));
        assert_eq!(e.argv, ["python3", "-m", "http.server", "", "4444"]);
        assert!(!e.argv_truncated && !e.filename_truncated && !e.exe_truncated);
        assert_eq!(e.old_tid, 4242);
    }

    #[test]
    fn exec_file_id_only_when_flagged() {
        let mut ev = exec_event(b"x\0", EXEC_EXE_RESOLVED);
        ev.exe_ino = 1_234_567;
        ev.exe_size = 43_184;
        ev.exe_mtime_sec = 1_700_000_000;
        ev.exe_mtime_nsec = 999_999_999;
        // sda1 (8, 1) as the kernel holds it.
        ev.exe_dev = (8 << 20) | 1;
        let KernelEvent::Exec(e) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(e.file, None, "no EXEC_EXE_FILE_ID, no identity");
        ev.flags |= EXEC_EXE_FILE_ID;
        let KernelEvent::Exec(e) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(
            e.file,
            Some(FileId {
                dev: 0x801,
                ino: 1_234_567,
                size: 43_184,
                mtime_sec: 1_700_000_000,
                mtime_nsec: 999_999_999,
            })
        );
        // Before the epoch is a negative time, kept as such.
        ev.exe_mtime_sec = -1;
        let KernelEvent::Exec(e) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(e.file.map(|f| f.mtime_sec), Some(-1));
    }

    #[test]
    fn kernel_dev_converts_to_stat_encoding() {
        // glibc: (major & 0xfff) << 8 | (major & ~0xfff) << 32 | (minor & 0xff) |
        // (minor & ~0xff) << 12.
        assert_eq!(stat_dev(0), 0);
        assert_eq!(stat_dev((8 << 20) | 1), 0x801); // sda1
        assert_eq!(stat_dev((259 << 20) | 3), 0x10303); // nvme0n1p3
        assert_eq!(stat_dev(34), 34); // an anonymous device (0, 34): overlayfs, btrfs
        assert_eq!(stat_dev(0x1234), 0x0120_0034); // (0, 0x1234): minor above 8 bits
        assert_eq!(stat_dev(u32::MAX), 0xffff_ffff); // (0xfff, 0xfffff)
        for (major, minor) in [(8u32, 1u32), (259, 3), (0, 0x1234), (0xfff, 0xf_ffff)] {
            let dev = stat_dev((major << 20) | minor);
            assert_eq!((libc::major(dev), libc::minor(dev)), (major, minor));
        }
    }

    #[test]
    fn exec_exe_only_when_resolved() {
        let ev = exec_event(b"x\0", EXEC_EXE_TRUNCATED);
        let KernelEvent::Exec(e) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(e.exe, None);
        assert!(e.exe_truncated);
    }

    #[test]
    fn truncated_exe_is_marked_and_never_absolute() {
        let mut ev = exec_event(b"x\0", EXEC_EXE_RESOLVED | EXEC_EXE_TRUNCATED);
        let tail = b"/d/e/f/binary";
        ev.exe = [0; EXE_LEN];
        ev.exe[..tail.len()].copy_from_slice(tail);
        ev.exe_len = tail.len() as u32;
        let KernelEvent::Exec(e) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(e.exe.as_deref(), Some("…/d/e/f/binary"));
        assert!(e.exe_truncated);
        // A cut in the middle of a UTF-8 sequence decodes lossily, still marked.
        ev.exe[0] = 0x80;
        let KernelEvent::Exec(e) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(e.exe.as_deref(), Some("…\u{fffd}d/e/f/binary"));
    }

    #[test]
    fn exec_lengths_clamped_and_utf8_lossy() {
        let mut ev = exec_event(b"a\xffb\0c", 0);
        ev.filename_len = u32::MAX;
        ev.exe_len = 100_000;
        ev.args_len = 5;
        ev.flags = EXEC_EXE_RESOLVED;
        let KernelEvent::Exec(e) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(e.filename, "/usr/bin/python3");
        assert_eq!(e.exe.as_deref(), Some("/usr/bin/python3.11"));
        assert_eq!(e.argv, ["a\u{fffd}b", "c"]);
        // args_len beyond the array reads the whole array and nothing more.
        ev.args = [b'z'; ARGS_LEN];
        ev.args_len = 9999;
        let KernelEvent::Exec(e) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(e.argv, ["z".repeat(ARGS_LEN)]);
    }

    #[test]
    fn argv_truncated_after_32() {
        let mut args = Vec::new();
        for i in 0..40 {
            args.extend_from_slice(format!("a{i}\0").as_bytes());
        }
        let KernelEvent::Exec(e) = decode(&bytes_of(&exec_event(&args, 0))).unwrap() else {
            panic!()
        };
        assert_eq!(e.argv.len(), record::ARGV_MAX);
        assert_eq!(e.argv[31], "a31");
        assert!(e.argv_truncated);

        // Exactly 32 is not truncated.
        let args: Vec<u8> = (0..32)
            .flat_map(|i| format!("b{i}\0").into_bytes())
            .collect();
        let KernelEvent::Exec(e) = decode(&bytes_of(&exec_event(&args, 0))).unwrap() else {
            panic!()
        };
        assert_eq!(e.argv.len(), 32);
        assert!(!e.argv_truncated);
    }

    #[test]
    fn argv_truncated_when_kernel_says_so() {
        let KernelEvent::Exec(e) =
            decode(&bytes_of(&exec_event(b"sh\0-c\0ech", EXEC_ARGS_TRUNCATED))).unwrap()
        else {
            panic!()
        };
        assert_eq!(e.argv, ["sh", "-c", "ech"]);
        assert!(e.argv_truncated);
    }

    #[test]
    fn euid_only_when_the_kernel_read_it() {
        // A setuid-root program run by uid 1000.
        let mut ev = exec_event(b"x\0", 0);
        ev.header.euid = 0;
        let KernelEvent::Exec(e) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!((e.origin.uid, e.origin.euid), (1000, Some(0)));
        ev.header.euid = EUID_UNKNOWN;
        let KernelEvent::Exec(e) = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(e.origin.euid, None);
    }

    /// The wire records the fuzz target `decode` starts from (`fuzz/corpus/decode/seed-*`), built
    /// by this module's test helpers: one of every kind, with the flags and families that take
    /// different paths. They must stay in step with the wire format: after a change to it, run
    /// `MONITOR_WRITE_FUZZ_SEEDS=1 cargo test -p monitor --lib fuzz_seeds` to rewrite them.
    fn fuzz_seeds() -> Vec<(&'static str, Vec<u8>)> {
        let mapped: Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        let v6: Ipv6Addr = "2001:db8::5".parse().unwrap();
        let mut udp = sock(
            EventKind::Connect,
            AF_INET,
            v4([0, 0, 0, 0]),
            v4([127, 0, 0, 1]),
        );
        udp.protocol = IPPROTO_UDP;
        udp.header.hook = Hook::TracepointSysEnterSendto as u32;
        let mut setuid = exec_event(b"passwd\0-S\0", EXEC_EXE_RESOLVED | EXEC_EXE_FILE_ID);
        setuid.header.euid = 0;
        setuid.exe_ino = 1_234_567;
        setuid.exe_size = 43_184;
        setuid.exe_dev = (8 << 20) | 1;
        let mut many = Vec::new();
        for i in 0..40 {
            many.extend_from_slice(format!("a{i}\0").as_bytes());
        }
        let mut cut = exec_event(
            &many,
            EXEC_EXE_RESOLVED | EXEC_EXE_TRUNCATED | EXEC_ARGS_TRUNCATED,
        );
        cut.filename_len = u32::MAX;
        let mut cred = header(EventKind::Cred);
        cred.hook = Hook::TracepointSysExitSetuid as u32;
        cred.euid = 1000;
        let mut pam = header(EventKind::Pam);
        pam.hook = Hook::UretprobePam as u32;
        vec![
            (
                "seed-listen-v4",
                bytes_of(&sock(
                    EventKind::Listen,
                    AF_INET,
                    v4([127, 0, 0, 1]),
                    [0; 16],
                )),
            ),
            (
                "seed-connect-v6",
                bytes_of(&sock(
                    EventKind::Connect,
                    AF_INET6,
                    Ipv6Addr::LOCALHOST.octets(),
                    v6.octets(),
                )),
            ),
            (
                "seed-connect-mapped-v4",
                bytes_of(&sock(
                    EventKind::Connect,
                    AF_INET6,
                    mapped.octets(),
                    mapped.octets(),
                )),
            ),
            ("seed-connect-udp", bytes_of(&udp)),
            (
                "seed-accept-v4",
                bytes_of(&sock(
                    EventKind::Accept,
                    AF_INET,
                    v4([10, 0, 0, 2]),
                    v4([192, 0, 2, 7]),
                )),
            ),
            (
                "seed-exec",
                bytes_of(&exec_event(
                    b"python3\0-m\0http.server\0\x004444\0",
                    EXEC_EXE_RESOLVED,
                )),
            ),
            ("seed-exec-setuid", bytes_of(&setuid)),
            ("seed-exec-truncated", bytes_of(&cut)),
            (
                "seed-fork",
                bytes_of(&ForkEvent {
                    header: header(EventKind::Fork),
                    child_tid: 5000,
                    child_tgid: 5000,
                }),
            ),
            (
                "seed-exit",
                bytes_of(&ExitEvent {
                    header: header(EventKind::Exit),
                    exit_code: 256,
                    _pad0: 0,
                }),
            ),
            (
                "seed-cred",
                bytes_of(&CredEvent {
                    header: cred,
                    old_uid: 0,
                    _pad0: 0,
                }),
            ),
            (
                "seed-setsid",
                bytes_of(&SetsidEvent {
                    header: header(EventKind::Setsid),
                    sid: 4242,
                    _pad0: 0,
                }),
            ),
            (
                "seed-pam",
                bytes_of(&PamEvent {
                    header: pam,
                    call: PamCall::Authenticate as u32,
                    ret: 7,
                }),
            ),
        ]
    }

    #[test]
    fn fuzz_seeds_match_the_wire_format() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode");
        let seeds = fuzz_seeds();
        if std::env::var_os("MONITOR_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &seeds {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
        for (name, bytes) in &seeds {
            assert!(decode(bytes).is_ok(), "{name} does not decode");
            let on_disk = std::fs::read(dir.join(name)).unwrap_or_default();
            assert!(
                on_disk == *bytes,
                "fuzz/corpus/decode/{name} is not the current wire format: \
                 MONITOR_WRITE_FUZZ_SEEDS=1 cargo test -p monitor --lib fuzz_seeds"
            );
        }
        // No seed of an older format lingers (kept crash inputs are not called seed-*).
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with("seed-") || seeds.iter().any(|(n, _)| *n == name),
                "fuzz/corpus/decode/{name} is no longer generated: remove it"
            );
        }
    }

    #[test]
    fn split_args_edges() {
        assert_eq!(split_args(b""), (vec![], false));
        assert_eq!(split_args(b"\0"), (vec![String::new()], false));
        assert_eq!(split_args(b"a"), (vec!["a".to_string()], false));
        assert_eq!(
            split_args(b"a\0\0"),
            (vec!["a".to_string(), String::new()], false)
        );
    }
}
