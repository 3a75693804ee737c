//! `connect`: a TCP socket starts an active open.
//!
//! Preferred: fentry on `tcp_connect(struct sock *sk)`, called by `tcp_v4_connect` /
//! `tcp_v6_connect` once the route, source address and port are chosen. Fallback:
//! `sock:inet_sock_set_state` with newstate `TCP_SYN_SENT`, set just before in the same functions.
//!
//! That fallback fires before `inet_hash_connect()` picks the source port, so its `sport` is still
//! 0. When the socket offsets are known, the record is parked per thread with the `struct sock *`
//! and sent, with the port, by whichever comes first:
//! - `syscalls:sys_exit_connect` (the port is picked by then, `-EINPROGRESS` included: a
//!   non-blocking connect goes out at once);
//! - the socket leaving `SYN_SENT` (SYN-ACK, RST, timeout), whose tracepoint still carries the port
//!   even when `inet_put_port()` is about to zero `skc_num`;
//! - the first SYN retransmission (`tcp:tcp_retransmit_skb`, state `SYN_SENT`), so a blocking
//!   connect to a silent peer is reported after the initial RTO (1 s), not when connect(2) gives
//!   up two minutes later.
//!
//! The last two run in softirq or timer context; the record already holds the caller's process
//! fields. Exactly one of them sends it: the one whose `CONNECT_SOCKS` delete succeeds (the hash
//! deletes under its bucket lock, so only one delete of a key returns 0). A `SYN_SENT` outside
//! connect(2) (`io_uring`'s `IORING_OP_CONNECT`, TCP Fast Open through sendmsg, kernel sockets)
//! is parked the same way and goes out when its socket leaves `SYN_SENT` or retransmits, which
//! every connect does: no `sys_enter_connect` mark is needed to tell the two apart (it cost every
//! connect(2) of the host an LRU insert and delete). A thread's older record still parked when it
//! parks a new one is sent first. Without the offsets, or with full maps, the record is sent at
//! once with port 0: a record without its source port beats no record. Every record keeps its
//! `SYN_SENT` timestamp.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, map, tracepoint},
    maps::{HashMap, lpm_trie::Key},
    programs::{FEntryContext, TracePointContext},
};
use monitor_common::{CONNECT_TRACKED_THREADS, ErrorSlot, EventKind, Hook, SockEvent};

use crate::{
    EVENTS,
    accept::WATCHED_NETS,
    scope::{Wake, current_wake, scope},
    shared::{
        Parked, Res, count_drop, count_error, current_tgid, floor, none_parked, off, parked_one,
        unparked_one,
    },
    sock::{
        TCP_SYN_SENT, emit_from_tracepoint, fill_from_tracepoint, local_port, tracepoint_daddr_v6,
        tracepoint_family, tracepoint_oldstate, tracepoint_sk, tracepoint_sport, try_sock_fentry,
    },
};

/// Connect records parked at `SYN_SENT`, by `pid_tgid`. A plain hash, not an LRU: an LRU would
/// evict a waiting record without a trace, whereas a full hash refuses the insert and the record
/// is sent at once (port 0). Only the owning thread inserts or deletes its key (at `SYN_SENT` and at
/// `sys_exit_connect`), so another context reading it never sees the slot reused under it.
#[map(name = "CONNECT_PENDING")]
static CONNECT_PENDING: HashMap<u64, PendingConnect> =
    HashMap::with_max_entries(CONNECT_TRACKED_THREADS, 0);

/// `struct sock *` → `pid_tgid` of the thread whose record for it is parked and not yet sent. It
/// lets a socket leaving `SYN_SENT` or retransmitting its SYN in another context find the record,
/// and deleting it is the claim on sending that record (see the module doc). A parked record
/// always has its entry: when this map is full the record is sent at once instead.
#[map(name = "CONNECT_SOCKS")]
static CONNECT_SOCKS: HashMap<u64, u64> = HashMap::with_max_entries(CONNECT_TRACKED_THREADS, 0);

/// A connect record seen at `SYN_SENT`, and the socket to read the source port from later.
#[repr(C)]
#[derive(Clone, Copy)]
struct PendingConnect {
    event: SockEvent,
    /// `struct sock *` from the tracepoint's `skaddr`.
    sk: u64,
    /// `1`: the record can raise an alert and wakes the daemon ([`Wake::Now`]).
    wake_now: u32,
    _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<PendingConnect>() == 120);

impl PendingConnect {
    #[inline(always)]
    fn wake(&self) -> Wake {
        Wake::when(self.wake_now == 1)
    }
}

// Field offsets of `tcp:tcp_retransmit_skb` (include/trace/events/tcp.h; `skaddr` and `state`
// have sat there since the tracepoint gained `state` in Linux 4.16).
const TP_RTX_SKADDR: usize = 16;
const TP_RTX_STATE: usize = 24;
const TP_RTX_SPORT: usize = 28;

#[fentry(function = "tcp_connect")]
pub fn connect_tcp_connect(ctx: FEntryContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_connect_tcp_connect(&ctx).is_err() {
        count_error(ErrorSlot::Connect);
    }
    0
}

fn try_connect_tcp_connect(ctx: &FEntryContext) -> Res<()> {
    let sk: *const u8 = ctx.arg(0);
    // SAFETY: try_sock_fentry has no precondition (it only probe-reads `sk`).
    unsafe { try_sock_fentry(sk, EventKind::Connect, Hook::FentryTcpConnect, false) }
}

#[tracepoint]
pub fn connect_inet_sock_set_state(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_connect_inet_sock_set_state(&ctx).is_err() {
        count_error(ErrorSlot::Connect);
    }
    0
}

fn try_connect_inet_sock_set_state(ctx: &TracePointContext) -> Res<()> {
    if tracepoint_oldstate(ctx) == TCP_SYN_SENT {
        // Established, refused or timed out: the answer (or its absence) is known, send now.
        send_for_sock(tracepoint_sk(ctx) as u64, tracepoint_sport(ctx));
        return Ok(());
    }
    let Some(family) = tracepoint_family(ctx, TCP_SYN_SENT) else {
        return Ok(());
    };
    let Some(wake) = wanted(ctx, family)? else {
        return Ok(());
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    if off!(sock_valid) != 1 {
        return emit_from_tracepoint(ctx, family, EventKind::Connect, wake);
    }
    // A record still parked for this thread is one whose connect did not end in connect(2)
    // (io_uring, TCP Fast Open); send it (with the port it has) unless another context did,
    // rather than overwrite it.
    if !none_parked(Parked::Connect)
        && let Some(p) = CONNECT_PENDING.get_ptr(pid_tgid)
    {
        // SAFETY: `p` is a CONNECT_PENDING value (non-NULL checked), readable for this run.
        unsafe { send_claimed(p, pid_tgid, 0, true) };
        if CONNECT_PENDING.remove(pid_tgid).is_ok() {
            unparked_one(Parked::Connect);
        }
    }
    // SAFETY: every byte of PendingConnect is an integer; zero is a valid value.
    let mut pending: PendingConnect = unsafe { core::mem::zeroed() };
    // SAFETY: `pending` is a local, valid for writes of its SockEvent.
    unsafe { fill_from_tracepoint(ctx, &raw mut pending.event, family, EventKind::Connect)? };
    pending.sk = tracepoint_sk(ctx) as u64;
    pending.wake_now = u32::from(wake == Wake::Now);
    if CONNECT_PENDING.insert(pid_tgid, pending, 0).is_err() {
        // Map full: send now, without the port, rather than lose the connect.
        // SAFETY: `pending` is an initialized local.
        unsafe { send_now(&raw const pending) };
        return Ok(());
    }
    parked_one(Parked::Connect);
    if CONNECT_SOCKS.insert(pending.sk, pid_tgid, 0).is_err() {
        // Without the socket entry nobody could claim the record: send it now, without the port.
        if CONNECT_PENDING.remove(pid_tgid).is_ok() {
            unparked_one(Parked::Connect);
        }
        // SAFETY: `pending` is an initialized local.
        unsafe { send_now(&raw const pending) };
    }
    Ok(())
}

#[tracepoint]
pub fn connect_tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_connect_tcp_retransmit_skb(&ctx).is_err() {
        count_error(ErrorSlot::Connect);
    }
    0
}

/// `tcp_retransmit_skb()`: in `SYN_SENT` this is the SYN going out again (the retransmit timer, at
/// the initial RTO), so the peer is slow or silent: send the parked record now rather than when
/// connect(2) gives up. The port was picked before the first SYN.
fn try_connect_tcp_retransmit_skb(ctx: &TracePointContext) -> Res<()> {
    // SAFETY: read_at copies an integer (valid for any bits) from the record with
    // bpf_probe_read_kernel, which fails instead of faulting; likewise below.
    let state: i32 = unsafe { ctx.read_at(TP_RTX_STATE)? };
    if state != TCP_SYN_SENT {
        return Ok(());
    }
    // SAFETY: as above, a u64.
    let sk: u64 = unsafe { ctx.read_at(TP_RTX_SKADDR)? };
    // SAFETY: as above, a u16.
    let sport: u16 = unsafe { ctx.read_at(TP_RTX_SPORT)? };
    send_for_sock(sk, sport);
    Ok(())
}

/// Sends the record parked for socket `sk`, if any, with `sport`, from whatever context the
/// socket event runs in (softirq, timer, another task): the owner comes from [`CONNECT_SOCKS`].
#[inline(always)]
fn send_for_sock(sk: u64, sport: u16) {
    if off!(sock_valid) != 1 {
        return;
    }
    let Some(owner) = CONNECT_SOCKS.get_ptr(sk) else {
        return;
    };
    // SAFETY: a CONNECT_SOCKS value (non-NULL checked), a u64 the kernel keeps valid for this run;
    // if its key was deleted meanwhile it may hold another owner, which the checks below reject.
    let owner = unsafe { *owner };
    let Some(p) = CONNECT_PENDING.get_ptr_mut(owner) else {
        return;
    };
    // SAFETY: `p` is a CONNECT_PENDING value (non-NULL checked) whose memory the kernel keeps valid
    // for this run even if the owner deletes it meanwhile; a reused slot holds another socket,
    // which the `sk` check and the claim in send_claimed reject.
    unsafe {
        if (*p).sk != sk {
            return;
        }
        // Kept in the record too, in case the ring buffer is full now and sys_exit_connect sends
        // it after inet_put_port() has zeroed skc_num. A u16 store: a concurrent reader sees the
        // old or the new port.
        if sport != 0 {
            (*p).event.sport = sport;
        }
        send_claimed(p, owner, sport, false);
    }
}

/// Whether userspace needs this connect in the current mode, and how soon: a marked process or
/// a watched destination can raise an alert (wake now); a fresh process's connect, or any with
/// `--events`, is read at the next flush tick (see `scope`).
#[inline(always)]
fn wanted(ctx: &TracePointContext, family: u16) -> Res<Option<Wake>> {
    let scope = scope();
    let wake = current_wake(current_tgid(), &scope);
    if wake == Some(Wake::Now) {
        return Ok(wake);
    }
    if scope.watched_nets == 1 {
        // SAFETY: tracepoint_daddr_v6 probe-reads byte arrays of the record.
        let daddr = tracepoint_daddr_v6(ctx, family)?;
        if WATCHED_NETS.get(Key::new(128, daddr)).is_some() {
            return Ok(Some(Wake::Now));
        }
    }
    Ok(wake)
}

#[tracepoint]
pub fn connect_sys_exit_connect(_ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_connect_sys_exit_connect().is_err() {
        count_error(ErrorSlot::Connect);
    }
    0
}

fn try_connect_sys_exit_connect() -> Res<()> {
    if none_parked(Parked::Connect) {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(p) = CONNECT_PENDING.get_ptr(pid_tgid) else {
        // Not a TCP connect, or it failed before SYN_SENT (or was sent at once).
        return Ok(());
    };
    // inet_hash_connect() has run by now; 0 means the port was released already, and the record
    // keeps the one the state change wrote into it. A failed read still lets the record go.
    // SAFETY: `p` is this thread's CONNECT_PENDING value (non-NULL checked), readable for this
    // run; local_port has no precondition.
    let port = unsafe { local_port((*p).sk as *const u8) };
    // SAFETY: as above.
    unsafe { send_claimed(p, pid_tgid, *port.as_ref().unwrap_or(&0), true) };
    // Sent here or earlier by another context: either way this thread is done with it.
    if CONNECT_PENDING.remove(pid_tgid).is_ok() {
        unparked_one(Parked::Connect);
    }
    port.map(|_| ())
}

/// Sends the parked record `p` of thread `owner` unless another context already has, with
/// `sport` when it is not 0. The copy into the ring buffer is made BEFORE the claim: once a
/// context has claimed, the owner may delete the record, so a copy made after could read a reused
/// slot. A context that loses the claim discards its copy. `last_chance` is set for the owner
/// thread, after which the record is gone: only then does a full ring buffer count as a drop
/// (the others leave the record to the owner's `sys_exit_connect`).
///
/// # Safety
/// `p` must be readable as one `PendingConnect` for the whole call: a `CONNECT_PENDING` value
/// (whose memory the kernel keeps valid while the program runs) or a local.
#[inline(always)]
unsafe fn send_claimed(p: *const PendingConnect, owner: u64, sport: u16, last_chance: bool) {
    // SAFETY: `p` is readable (the caller's contract).
    let sk = unsafe { (*p).sk };
    // Cheap check first: gone (already sent) or, for a record whose sys_exit was missed, its
    // socket freed and its address reused by another thread's connect (whose entry this is; the
    // stale record went out when its socket left SYN_SENT).
    // SAFETY: `get`'s caveat is that a deleted element may be reused under the reference; the u64
    // is copied out at once (any bits are valid) and only compared, and the delete below is what
    // decides who sends.
    match unsafe { CONNECT_SOCKS.get(sk) } {
        Some(&o) if o == owner => {}
        _ => return,
    }
    let Some(mut entry) = EVENTS.reserve::<SockEvent>(0) else {
        if last_chance && CONNECT_SOCKS.remove(sk).is_ok() {
            count_drop();
        }
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `p` is readable (the caller's contract); `ev` comes from RingBufEntry::as_mut_ptr and
    // is valid for writes of one SockEvent until submit/discard. Ring-buffer memory does not
    // overlap a map value or the stack.
    unsafe {
        core::ptr::copy_nonoverlapping(&raw const (*p).event, ev, 1);
        if sport != 0 {
            (*ev).sport = sport;
        }
    }
    // SAFETY: `p` is readable (the caller's contract).
    let wake = unsafe { (*p).wake() };
    // The hash deletes under its bucket lock: exactly one context gets 0 for this key.
    if CONNECT_SOCKS.remove(sk).is_ok() {
        entry.submit(wake.flags());
    } else {
        entry.discard(0);
    }
}

/// Sends a record that was never parked (no claim needed), keeping the port it has.
///
/// # Safety
/// `p` must be readable as one `PendingConnect`.
#[inline(always)]
unsafe fn send_now(p: *const PendingConnect) {
    let Some(mut entry) = EVENTS.reserve::<SockEvent>(0) else {
        count_drop();
        return;
    };
    // SAFETY: `p` is readable (the caller's contract); the destination comes from
    // RingBufEntry::as_mut_ptr, valid for one SockEvent until submit, and does not overlap `p`.
    unsafe { core::ptr::copy_nonoverlapping(&raw const (*p).event, entry.as_mut_ptr(), 1) };
    // SAFETY: as above.
    entry.submit(unsafe { (*p).wake() }.flags());
}
