//! `connect`: a TCP socket starts an active open.
//!
//! Preferred: fentry on `tcp_connect(struct sock *sk)`, called by `tcp_v4_connect` /
//! `tcp_v6_connect` once the route, source address and port are chosen. Fallback:
//! `sock:inet_sock_set_state` with newstate `TCP_SYN_SENT`, set just before in the same functions.
//!
//! That fallback fires before `inet_hash_connect()` picks the source port, so its `sport` is still
//! 0. When the SYN_SENT happens inside connect(2) (marked by `syscalls:sys_enter_connect`) and the
//! socket offsets are known, the record is parked per thread with the `struct sock *`, and
//! `syscalls:sys_exit_connect` sends it with `skc_num` read then (the port is picked by the time
//! connect(2) returns, `-EINPROGRESS` included). Every other SYN_SENT (io_uring, TCP Fast Open
//! through sendmsg, kernel sockets, no offsets, full maps) is sent at once with port 0: a record
//! without its source port beats no record.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, map, tracepoint},
    maps::{HashMap, LruHashMap},
    programs::{FEntryContext, TracePointContext},
};
use monitor_common::{CONNECT_TRACKED_THREADS, ErrorSlot, EventKind, Hook, SockEvent};

use crate::{
    EVENTS,
    shared::{Res, count_drop, count_error, is_monitor, off},
    sock::{
        TCP_SYN_SENT, emit_from_tracepoint, fill_from_tracepoint, local_port, tracepoint_family,
        tracepoint_sk, try_sock_fentry,
    },
};

/// Threads inside connect(2), by `pid_tgid` (value unused). LRU because losing a mark is cheap:
/// that connect is then reported at SYN_SENT, with port 0.
#[map(name = "CONNECT_IN_SYSCALL")]
static CONNECT_IN_SYSCALL: LruHashMap<u64, u8> =
    LruHashMap::with_max_entries(CONNECT_TRACKED_THREADS, 0);

/// Connect records waiting for their thread's connect(2) to return, by `pid_tgid`. A plain hash,
/// not an LRU: an LRU would evict a waiting record without a trace, whereas a full hash refuses
/// the insert and the record is sent at once (port 0). Only the owning thread touches its key.
#[map(name = "CONNECT_PENDING")]
static CONNECT_PENDING: HashMap<u64, PendingConnect> =
    HashMap::with_max_entries(CONNECT_TRACKED_THREADS, 0);

/// A connect record seen at SYN_SENT, and the socket to read the source port from later.
#[repr(C)]
#[derive(Clone, Copy)]
struct PendingConnect {
    event: SockEvent,
    /// `struct sock *` from the tracepoint's `skaddr`.
    sk: u64,
}
const _: () = assert!(core::mem::size_of::<PendingConnect>() == 112);

#[fentry(function = "tcp_connect")]
pub fn connect_tcp_connect(ctx: FEntryContext) -> u32 {
    if try_connect_tcp_connect(&ctx).is_err() {
        count_error(ErrorSlot::Connect);
    }
    0
}

fn try_connect_tcp_connect(ctx: &FEntryContext) -> Res<()> {
    let sk: *const u8 = ctx.arg(0);
    unsafe { try_sock_fentry(sk, EventKind::Connect, Hook::FentryTcpConnect, false) }
}

#[tracepoint]
pub fn connect_inet_sock_set_state(ctx: TracePointContext) -> u32 {
    if try_connect_inet_sock_set_state(&ctx).is_err() {
        count_error(ErrorSlot::Connect);
    }
    0
}

fn try_connect_inet_sock_set_state(ctx: &TracePointContext) -> Res<()> {
    let Some(family) = tracepoint_family(ctx, TCP_SYN_SENT)? else {
        return Ok(());
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    if off!(sock_valid) != 1 || CONNECT_IN_SYSCALL.get_ptr(pid_tgid).is_none() {
        return emit_from_tracepoint(ctx, family, EventKind::Connect);
    }
    // A record still parked for this thread means its sys_exit_connect was missed; send it (with
    // the port it has) rather than overwrite it.
    let stale = match CONNECT_PENDING.get_ptr(pid_tgid) {
        Some(p) => {
            let sent = unsafe { send_pending(p, false) };
            let _ = CONNECT_PENDING.remove(pid_tgid);
            sent
        }
        None => Ok(()),
    };
    // SAFETY: every byte of PendingConnect is an integer; zero is a valid value.
    let mut pending: PendingConnect = unsafe { core::mem::zeroed() };
    unsafe { fill_from_tracepoint(ctx, &raw mut pending.event, family, EventKind::Connect)? };
    pending.sk = tracepoint_sk(ctx)? as u64;
    if CONNECT_PENDING.insert(pid_tgid, &pending, 0).is_err() {
        // Map full: send now, without the port, rather than lose the connect.
        unsafe { send_pending(&raw const pending, false)? };
    }
    stale
}

#[tracepoint]
pub fn connect_sys_enter_connect(_ctx: TracePointContext) -> u32 {
    if try_connect_sys_enter_connect().is_err() {
        count_error(ErrorSlot::Connect);
    }
    0
}

fn try_connect_sys_enter_connect() -> Res<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_monitor((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    CONNECT_IN_SYSCALL.insert(pid_tgid, 1, 0)
}

#[tracepoint]
pub fn connect_sys_exit_connect(_ctx: TracePointContext) -> u32 {
    if try_connect_sys_exit_connect().is_err() {
        count_error(ErrorSlot::Connect);
    }
    0
}

fn try_connect_sys_exit_connect() -> Res<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // -ENOENT for the monitor's own connects and evicted marks: nothing to clear.
    let _ = CONNECT_IN_SYSCALL.remove(pid_tgid);
    let Some(p) = CONNECT_PENDING.get_ptr(pid_tgid) else {
        // Not a TCP connect, or it failed before SYN_SENT (or was sent at once).
        return Ok(());
    };
    let sent = unsafe { send_pending(p, true) };
    let _ = CONNECT_PENDING.remove(pid_tgid);
    sent
}

/// Copies a parked record into the ring buffer, its SYN_SENT timestamp kept. With `read_port`,
/// the source port is read from the socket first (inet_hash_connect() has run by now); if that
/// read fails the record still goes out, with the tracepoint's port, and the error is returned.
#[inline(always)]
unsafe fn send_pending(p: *const PendingConnect, read_port: bool) -> Res<()> {
    let Some(mut entry) = EVENTS.reserve::<SockEvent>(0) else {
        count_drop();
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    let mut result = Ok(());
    unsafe {
        core::ptr::copy_nonoverlapping(&raw const (*p).event, ev, 1);
        if read_port {
            match local_port((*p).sk as *const u8) {
                Ok(port) => (*ev).sport = port,
                Err(e) => result = Err(e),
            }
        }
    }
    entry.submit(0);
    result
}
