//! `udp`: where UDP sockets send, at `syscalls:sys_enter_connect`, `sys_enter_sendto`,
//! `sys_enter_sendmsg` and `sys_enter_sendmmsg`, reported as connect records with protocol UDP.
//!
//! UDP has no handshake for a state-change tracepoint to see: the destination is the address a
//! connect(2) or a send names, so these programs read it from the caller's sockaddr (user memory)
//! at the syscall's entry, as the kernel does right after (`move_addr_to_kernel()`,
//! `copy_msghdr_from_user()`). A thread rewriting the buffer in between could make a record name
//! another address than the datagram's; a call the kernel then fails (unreachable network, full
//! buffer) is reported as the attempt it was. Nothing here blocks or changes a call.
//!
//! Most UDP traffic is DNS and local chatter no rule cares about, so little of it leaves the
//! kernel. By default only processes under a web server (`WEB_TREE`) or running as a web
//! server's user (`WEB_UIDS`, the real uid), or too new for userspace to have judged (see
//! `scope`), are looked at; `--events` (`SCOPE_ALL`) looks at all, and wakes the daemon only for
//! those in scope. Port 53 is never reported, and a (process, destination) pair once
//! (`UDP_SEEN`, an LRU: a pair pushed out by 8192 newer ones is reported again; a new process
//! that reuses the pid of one still in it is not reported for their common destinations). The
//! checks go cheapest first: the offsets and the monitor itself, the filter, whether the call
//! names a destination at all (before the descriptor: for sendmsg that is one user read against
//! the file-table walk), the descriptor's socket being IPv4/IPv6 with `sk_protocol` UDP (through
//! the file table, as `accept` does), the sockaddr, the port, the dedup.
//!
//! What is read of a call:
//! - connect(2): its address; `AF_UNSPEC` (dissolving the association) is not a destination. The
//!   record waits in `UDP_CONNECT_PENDING` until `sys_exit_connect` (`udp_sys_exit_connect`),
//!   which fills in the local address and port the connect gave the socket (the route's source
//!   address, the autobound port), so that the record names the flow's whole 5-tuple (its
//!   Community ID); a connect that failed is still reported, with what the socket has.
//! - sendto(2): its address when not NULL (NULL: the connected destination, reported at connect).
//! - sendmsg(2): `msg_name` when not NULL.
//! - sendmmsg(2): the FIRST message's `msg_name` only; the later messages of the same call are
//!   not looked at (that would be a loop over user memory per call).
//!
//! The address is judged as the kernel will (`udp_sendmsg()`, `udpv6_sendmsg()`,
//! `__ip4_datagram_connect()`, `__ip6_datagram_connect()`): an `AF_INET` address on an IPv6
//! socket is reported as `::ffff:a.b.c.d` on that socket, as TCP's mapped connects are; a send
//! to port 0 or with a too-short address (refused with `EINVAL`) is not reported. A raw socket
//! opened for protocol 17 has `sk_protocol` UDP too and is reported like one.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated::bpf_ktime_get_boot_ns},
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap},
    programs::TracePointContext,
};
use monitor_common::{
    AF_INET, AF_INET6, AF_UNSPEC, ErrorSlot, EventKind, Hook, IPPROTO_UDP, SockEvent,
    UDP_CONNECT_TRACKED_THREADS, UDP_SEEN_MAX, UdpSeenKey, WEB_UIDS_MAX,
};

use crate::{
    EVENTS,
    scope::{Wake, current_wake, scope},
    shared::{
        Parked, Res, count_drop, count_error, current_tgid, fill_header, floor, is_monitor,
        none_parked, off, offsets_valid, parked_one, unparked_one,
    },
    sock::{fd_sock, inet_family, local_addr, local_port, mapped, widen},
};

/// The web servers' service users, by uid (value unused); set by userspace.
#[map(name = "WEB_UIDS")]
pub(crate) static WEB_UIDS: HashMap<u32, u32> = HashMap::with_max_entries(WEB_UIDS_MAX, 0);

/// (process, destination) pairs already reported → when. An LRU, so that a process spraying
/// destinations cannot fill it for good: the oldest pairs make room (and would be reported again).
#[map(name = "UDP_SEEN")]
static UDP_SEEN: LruHashMap<UdpSeenKey, u64> = LruHashMap::with_max_entries(UDP_SEEN_MAX, 0);

/// UDP connect records waiting for connect(2) to return, by `pid_tgid`. A plain hash: a full map
/// refuses the insert and the record is sent at once, without the local side, rather than
/// evicted. Only the owning thread touches its key, and `udp_sys_exit_connect` (attached before
/// `udp_sys_enter_connect`) always clears it.
#[map(name = "UDP_CONNECT_PENDING")]
static UDP_CONNECT_PENDING: HashMap<u64, PendingConnect> =
    HashMap::with_max_entries(UDP_CONNECT_TRACKED_THREADS, 0);

/// A UDP connect record seen at `sys_enter_connect`, the socket to read the local side from when
/// the call returns, and how soon userspace must see it.
#[repr(C)]
#[derive(Clone, Copy)]
struct PendingConnect {
    event: SockEvent,
    /// `struct sock *`.
    sk: u64,
    /// `1`: [`Wake::Now`].
    wake_now: u32,
    _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<PendingConnect>() == 120);

// Arguments of the `syscalls:sys_enter_*` records: after the common fields and `__syscall_nr`,
// one 8-byte slot each (include/trace/syscall.h; `syscall_enter_define_fields()`).
const TP_ARG0: usize = 16;
const TP_ARG1: usize = 24;
const TP_ARG2: usize = 32;
const TP_ARG4: usize = 48;
const TP_ARG5: usize = 56;

/// DNS: never reported.
const DNS_PORT: u16 = 53;
/// `sizeof(struct sockaddr_in)` and `SIN6_LEN_RFC2133` (a `sockaddr_in6` without its scope id):
/// the shortest addresses the kernel takes.
const SOCKADDR_IN_LEN: i32 = 16;
const SOCKADDR_IN6_LEN: i32 = 24;
/// `BPF_NOEXIST` for a map update, and the `-EEXIST` it fails with.
const BPF_NOEXIST: u64 = 1;
const EEXIST: i32 = -17;

/// What the destination is given to: connect(2) or a send.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Connect,
    Send,
}

#[tracepoint]
pub fn udp_sys_enter_connect(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_udp_sys_enter_connect(&ctx).is_err() {
        count_error(ErrorSlot::Connect);
    }
    0
}

/// `connect(int fd, struct sockaddr *uservaddr, int addrlen)`.
fn try_udp_sys_enter_connect(ctx: &TracePointContext) -> Res<()> {
    let Some(wake) = wanted() else {
        return Ok(());
    };
    // SAFETY: read_at probe-reads u64 slots of the record (valid for any bits), likewise in the
    // other programs below.
    let (fd, addr, len) = unsafe {
        (
            ctx.read_at::<u64>(TP_ARG0)?,
            ctx.read_at::<u64>(TP_ARG1)?,
            ctx.read_at::<u64>(TP_ARG2)?,
        )
    };
    report(
        fd,
        addr,
        len,
        Call::Connect,
        Hook::TracepointSysEnterConnect,
        wake,
    )
}

#[tracepoint]
pub fn udp_sys_enter_sendto(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_udp_sys_enter_sendto(&ctx).is_err() {
        count_error(ErrorSlot::Connect);
    }
    0
}

/// `sendto(int fd, void *buff, size_t len, unsigned int flags, struct sockaddr *addr,
/// int addr_len)`.
fn try_udp_sys_enter_sendto(ctx: &TracePointContext) -> Res<()> {
    let Some(wake) = wanted() else {
        return Ok(());
    };
    // SAFETY: as in try_udp_sys_enter_connect.
    let (fd, addr, len) = unsafe {
        (
            ctx.read_at::<u64>(TP_ARG0)?,
            ctx.read_at::<u64>(TP_ARG4)?,
            ctx.read_at::<u64>(TP_ARG5)?,
        )
    };
    report(
        fd,
        addr,
        len,
        Call::Send,
        Hook::TracepointSysEnterSendto,
        wake,
    )
}

#[tracepoint]
pub fn udp_sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_udp_sys_enter_sendmsg(&ctx).is_err() {
        count_error(ErrorSlot::Connect);
    }
    0
}

/// `sendmsg(int fd, struct user_msghdr *msg, unsigned int flags)`.
fn try_udp_sys_enter_sendmsg(ctx: &TracePointContext) -> Res<()> {
    let Some(wake) = wanted() else {
        return Ok(());
    };
    // SAFETY: as in try_udp_sys_enter_connect.
    let (fd, msg) = unsafe { (ctx.read_at::<u64>(TP_ARG0)?, ctx.read_at::<u64>(TP_ARG1)?) };
    // SAFETY: msg_name has no precondition.
    let (addr, len) = unsafe { msg_name(msg)? };
    report(
        fd,
        addr,
        len,
        Call::Send,
        Hook::TracepointSysEnterSendmsg,
        wake,
    )
}

#[tracepoint]
pub fn udp_sys_enter_sendmmsg(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_udp_sys_enter_sendmmsg(&ctx).is_err() {
        count_error(ErrorSlot::Connect);
    }
    0
}

/// `sendmmsg(int fd, struct mmsghdr *mmsg, unsigned int vlen, unsigned int flags)`: the first
/// `struct mmsghdr` starts with its `struct user_msghdr`.
fn try_udp_sys_enter_sendmmsg(ctx: &TracePointContext) -> Res<()> {
    let Some(wake) = wanted() else {
        return Ok(());
    };
    // SAFETY: as in try_udp_sys_enter_connect.
    let (fd, mmsg, vlen) = unsafe {
        (
            ctx.read_at::<u64>(TP_ARG0)?,
            ctx.read_at::<u64>(TP_ARG1)?,
            ctx.read_at::<u64>(TP_ARG2)?,
        )
    };
    if vlen as u32 == 0 {
        // Nothing is sent.
        return Ok(());
    }
    // SAFETY: msg_name has no precondition.
    let (addr, len) = unsafe { msg_name(mmsg)? };
    report(
        fd,
        addr,
        len,
        Call::Send,
        Hook::TracepointSysEnterSendmmsg,
        wake,
    )
}

/// Whether the current process is one userspace wants UDP destinations of (the monitor never
/// is), and the offsets to find them are known; with how soon it must see them.
#[inline(always)]
fn wanted() -> Option<Wake> {
    if !offsets_valid() || off!(files_valid) != 1 || off!(sock_valid) != 1 {
        return None;
    }
    let tgid = current_tgid();
    if is_monitor(tgid) {
        return None;
    }
    current_wake(tgid, &scope())
}

/// `msg_name` and `msg_namelen` of the caller's `struct user_msghdr` at `msg` (`void *msg_name`
/// at 0, `int msg_namelen` at 8); `(0, 0)` for a NULL `msg` (which the kernel refuses).
///
/// # Safety
/// No precondition: `msg` may be any user address, it is only read through
/// `bpf_probe_read_user`.
#[inline(always)]
unsafe fn msg_name(msg: u64) -> Res<(u64, u64)> {
    if msg == 0 {
        return Ok((0, 0));
    }
    // SAFETY: bpf_probe_read_user copies integers (valid for any bits) and fails instead of
    // faulting on a bad address.
    unsafe {
        let name: u64 = bpf_probe_read_user(msg as *const u64)?;
        let len: u32 = bpf_probe_read_user((msg + 8) as *const u32)?;
        Ok((name, u64::from(len)))
    }
}

/// Reports the destination at user address `addr` (`len` bytes) given for descriptor `fd`, when
/// `fd` is a UDP socket, the destination is one the kernel would send to, and it was not
/// reported for this process before.
#[inline(always)]
fn report(fd: u64, addr: u64, len: u64, call: Call, hook: Hook, wake: Wake) -> Res<()> {
    if addr == 0 || (len as i32) < 2 {
        return Ok(());
    }
    // The address family before anything else: a connect or send to a unix socket (nginx to
    // php-fpm, on every request) ends here, before the walk from descriptor to socket.
    // `destination` refuses the same families again on the address it reads.
    // SAFETY: bpf_probe_read_user copies an integer (valid for any bits) and fails instead of
    // faulting on a bad address.
    let sa_family: u16 = unsafe { bpf_probe_read_user(addr as *const u16)? };
    if !(sa_family == AF_INET
        || sa_family == AF_INET6
        || (sa_family == AF_UNSPEC && call == Call::Send))
    {
        return Ok(());
    }
    // `int fd` in an 8-byte slot: a negative one is refused with EBADF.
    let Ok(fd) = u32::try_from(fd as i32) else {
        return Ok(());
    };
    // SAFETY: fd_sock, inet_family and destination have no precondition.
    let Some(sk) = (unsafe { fd_sock(fd)? }) else {
        return Ok(());
    };
    // SAFETY: as above.
    let Some(family) = (unsafe { inet_family(sk, IPPROTO_UDP)? }) else {
        return Ok(());
    };
    // SAFETY: as above.
    let Some((dport, daddr)) = (unsafe { destination(addr, len as i32, family, call)? }) else {
        return Ok(());
    };
    if dport == DNS_PORT {
        return Ok(());
    }
    let key = UdpSeenKey {
        tgid: current_tgid(),
        port: dport,
        family,
        addr: daddr,
    };
    // SAFETY: bpf_ktime_get_boot_ns takes no arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // NOEXIST: of two threads sending to one destination at once, exactly one inserts. Another
    // failure (no memory) reports rather than loses the destination.
    if UDP_SEEN.insert(key, now, BPF_NOEXIST) == Err(EEXIST) {
        return Ok(());
    }
    if call == Call::Connect {
        // SAFETY: every byte of PendingConnect is an integer; zero is a valid value.
        let mut pending: PendingConnect = unsafe { core::mem::zeroed() };
        // SAFETY: `pending.event` is a local, valid for writes of one SockEvent.
        let filled = unsafe { fill(&raw mut pending.event, sk, family, hook, dport, daddr) };
        if let Err(e) = filled {
            let _ = UDP_SEEN.remove(key);
            return Err(e);
        }
        pending.sk = sk as u64;
        pending.wake_now = u32::from(wake == Wake::Now);
        if UDP_CONNECT_PENDING
            .insert(bpf_get_current_pid_tgid(), pending, 0)
            .is_ok()
        {
            parked_one(Parked::UdpConnect);
            return Ok(());
        }
        // Map full: sent now, as before the connect, rather than lost.
        // SAFETY: `pending` is a local PendingConnect.
        unsafe { send_pending(&raw const pending) };
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<SockEvent>(0) else {
        count_drop();
        // Not sent: the next datagram to this destination tries again.
        let _ = UDP_SEEN.remove(key);
        return Ok(());
    };
    // SAFETY: the pointer comes from RingBufEntry::as_mut_ptr and is valid for writes of one
    // SockEvent until submit/discard; `sk` may be any address.
    let filled = unsafe { fill(entry.as_mut_ptr(), sk, family, hook, dport, daddr) };
    if let Err(e) = filled {
        entry.discard(0);
        let _ = UDP_SEEN.remove(key);
        return Err(e);
    }
    entry.submit(wake.flags());
    Ok(())
}

#[tracepoint]
pub fn udp_sys_exit_connect(_ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    try_udp_sys_exit_connect();
    0
}

/// Sends the UDP connect record parked by this thread's `sys_enter_connect`, with the local
/// address and port the socket has now.
fn try_udp_sys_exit_connect() {
    if none_parked(Parked::UdpConnect) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(p) = UDP_CONNECT_PENDING.get_ptr_mut(pid_tgid) else {
        // Not a UDP connect we report (the common case: a TCP connect, DNS, a repeat).
        return;
    };
    // SAFETY: `p` is this thread's UDP_CONNECT_PENDING value (non-NULL checked), valid for this
    // run of the program and touched by no other thread; local_port and local_addr have no
    // precondition. A read that fails keeps what the record had at the call's entry.
    unsafe {
        let sk = (*p).sk as *const u8;
        if let Ok(port) = local_port(sk) {
            (*p).event.sport = port;
        }
        if let Ok(addr) = local_addr(sk, (*p).event.family) {
            (*p).event.saddr = addr;
        }
        send_pending(p);
    }
    if UDP_CONNECT_PENDING.remove(pid_tgid).is_ok() {
        unparked_one(Parked::UdpConnect);
    }
}

/// Copies the parked record at `p` into the ring buffer. A full one is counted in `DROPS`, and
/// the destination is forgotten in `UDP_SEEN`, so that the process's next datagram there tries
/// again.
///
/// # Safety
/// `p` must be readable as one `PendingConnect` (a `UDP_CONNECT_PENDING` value or a local).
#[inline(always)]
unsafe fn send_pending(p: *const PendingConnect) {
    let Some(mut entry) = EVENTS.reserve::<SockEvent>(0) else {
        count_drop();
        // SAFETY: `p` is readable (the caller's contract); the fields are integers and arrays.
        let key = unsafe {
            UdpSeenKey {
                tgid: (*p).event.header.tgid,
                port: (*p).event.dport,
                family: (*p).event.family,
                addr: (*p).event.daddr,
            }
        };
        let _ = UDP_SEEN.remove(key);
        return;
    };
    // SAFETY: `p` is readable (the caller's contract); the entry is valid for writes of one
    // SockEvent until submit, and ring-buffer memory overlaps neither a map value nor the stack.
    let wake = unsafe {
        core::ptr::copy_nonoverlapping(&raw const (*p).event, entry.as_mut_ptr(), 1);
        Wake::when((*p).wake_now == 1)
    };
    entry.submit(wake.flags());
}

/// Fills `ev`: the caller's header, the socket's local side as it is now (port 0 before the first
/// send or connect binds one), the destination.
///
/// # Safety
/// `ev` must be valid for writes of one `SockEvent`; it may be uninitialized. `sk` may be any
/// address: it is only read through `bpf_probe_read_kernel`.
#[inline(always)]
unsafe fn fill(
    ev: *mut SockEvent,
    sk: *const u8,
    family: u16,
    hook: Hook,
    dport: u16,
    daddr: [u8; 16],
) -> Res<()> {
    // SAFETY: `ev` is valid for writes (the caller's contract) and its fields are integers and
    // byte arrays, so assigning drops nothing; local_port and local_addr have no precondition.
    unsafe {
        fill_header(&raw mut (*ev).header, EventKind::Connect, hook);
        (*ev).family = family;
        (*ev).protocol = IPPROTO_UDP;
        (*ev).sport = local_port(sk)?;
        (*ev).dport = dport;
        (*ev).saddr = local_addr(sk, family)?;
        (*ev).daddr = daddr;
    }
    Ok(())
}

/// The destination of the caller's sockaddr at `addr` (`len` bytes) for a socket of `family`:
/// port (host order) and address in the `SockEvent` layout; `None` when the kernel would not
/// send there (see the module doc) or the connect dissolves the association.
///
/// # Safety
/// No precondition: `addr` may be any user address, it is only read through
/// `bpf_probe_read_user`.
#[inline(always)]
unsafe fn destination(
    addr: u64,
    len: i32,
    family: u16,
    call: Call,
) -> Res<Option<(u16, [u8; 16])>> {
    if len < 2 {
        return Ok(None);
    }
    // SAFETY: bpf_probe_read_user copies integers and byte arrays (valid for any bits) and fails
    // instead of faulting on a bad address; every read stays within the `len` bytes checked.
    unsafe {
        let sa_family: u16 = bpf_probe_read_user(addr as *const u16)?;
        // sin_port and sin6_port sit at 2, in network byte order.
        let ipv4 = match sa_family {
            AF_INET => true,
            AF_INET6 if family == AF_INET6 => false,
            // udp_sendmsg() sends an IPv4 socket's AF_UNSPEC address like an AF_INET one; an
            // IPv6 socket ignores it (and sends to its connected peer); a connect dissolves.
            AF_UNSPEC if call == Call::Send && family == AF_INET => true,
            _ => return Ok(None),
        };
        if len
            < if ipv4 {
                SOCKADDR_IN_LEN
            } else {
                SOCKADDR_IN6_LEN
            }
        {
            return Ok(None);
        }
        let port = u16::from_be_bytes(bpf_probe_read_user((addr + 2) as *const [u8; 2])?);
        if port == 0 && call == Call::Send {
            // -EINVAL.
            return Ok(None);
        }
        let daddr = if ipv4 {
            let v4: [u8; 4] = bpf_probe_read_user((addr + 4) as *const [u8; 4])?;
            if family == AF_INET6 {
                mapped(v4)
            } else {
                widen(v4)
            }
        } else {
            bpf_probe_read_user((addr + 8) as *const [u8; 16])?
        };
        Ok(Some((port, daddr)))
    }
}
