//! `listen`: a TCP socket starts listening.
//!
//! Preferred: fentry on `inet_listen(struct socket *sock, int backlog)`. It fires on entry, before
//! `inet_csk_listen_start()` has bound a port (a never-bound socket shows port 0) and before the
//! listen can fail (`EADDRINUSE`): sockets not in `TCP_CLOSE` (a second listen(2) on a listening
//! socket only sets the backlog) are skipped, but the other two flaws would need a matching fexit,
//! which is refused on the kernels this was written on (EPERM), so they stay.
//!
//! Fallback: `sock:inet_sock_set_state` with newstate `TCP_LISTEN`. `inet_csk_listen_start()`
//! sets that state BEFORE `get_port()`: autobind has not picked the port yet, and when
//! `get_port()` or `hash()` fails the socket goes back to `TCP_CLOSE` and listen(2) returns the
//! error. So when the socket offsets are known the record is parked per thread with the
//! `struct sock *`, and `syscalls:sys_exit_listen` sends it only when listen(2) returned 0, with
//! the port read from `skc_num` then. The bound address needs no re-read: `get_port()` binds the
//! port to the address the socket already has (`0.0.0.0` / `::` when unbound). A failed listen
//! sends nothing and counts nothing (it is not an error of ours).
//!
//! A `TCP_LISTEN` outside listen(2) (`io_uring`'s `IORING_OP_LISTEN`, in the submitting task or
//! an io-wq worker) has no `sys_exit_listen` to send it: the daemon sends every record parked
//! longer than a few milliseconds itself (`Watch::abandoned_listens`, every 100 ms), and the
//! thread's next park sends the one before it. Either way the sender claims the record by
//! deleting its key (the hash deletes under its bucket lock: one delete of a key returns 0), so
//! it goes out once. No `sys_enter_listen` mark is needed to tell the two apart (it cost every
//! listen(2) of the host an LRU insert and delete). Without the offsets, or with a full map, the
//! record is sent at once, as the tracepoint has it.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, map, tracepoint},
    maps::HashMap,
    programs::{FEntryContext, TracePointContext},
};
use monitor_common::{
    AF_INET6, ErrorSlot, EventKind, Hook, LISTEN_TRACKED_THREADS, PendingListen, SockEvent,
};

use crate::{
    EVENTS,
    scope::{Wake, scope, send_all},
    shared::{
        Parked, Res, count_drop, count_error, floor, none_parked, off, parked_one, read_kernel,
        unparked_one,
    },
    sock::{
        TCP_CLOSE, TCP_LISTEN, TP_SADDR, TP_SADDR_V6, emit_from_tracepoint, fill_from_tracepoint,
        is_loopback, local_port, socket_sk, tp_field, tracepoint_family, tracepoint_sk,
        try_sock_fentry, widen,
    },
};

/// Listen records parked at `TCP_LISTEN`, by `pid_tgid`. A plain hash, not an LRU: a full hash
/// refuses the insert and the record is sent at once instead of being evicted without a trace.
/// The owning thread inserts its key; its `sys_exit_listen`, its next park or the daemon's sweep
/// deletes it, and only the context whose delete succeeds sends the record.
#[map(name = "LISTEN_PENDING")]
static LISTEN_PENDING: HashMap<u64, PendingListen> =
    HashMap::with_max_entries(LISTEN_TRACKED_THREADS, 0);

/// `ret` of `syscalls:sys_exit_listen` (a `long` after the common fields and `__syscall_nr`;
/// the layout every `sys_exit_*` tracepoint shares).
const TP_SYS_EXIT_RET: usize = 16;

#[fentry(function = "inet_listen")]
pub fn listen_inet_listen(ctx: FEntryContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_listen_inet_listen(&ctx).is_err() {
        count_error(ErrorSlot::Listen);
    }
    0
}

fn try_listen_inet_listen(ctx: &FEntryContext) -> Res<()> {
    let sock: *const u8 = ctx.arg(0);
    if off!(sock_valid) != 1 {
        return Ok(());
    }
    // SAFETY: socket_sk, read_kernel::<u8> and try_sock_fentry only probe-read kernel memory
    // (a bad `sock` fails the read, never faults) into values valid for any bits.
    unsafe {
        let sk = socket_sk(sock)?;
        // inet_listen() only starts listening from TCP_CLOSE; from TCP_LISTEN it just changes
        // the backlog, and from any other state it fails with EINVAL.
        let state: u8 = read_kernel(sk, off!(skc_state))?;
        if i32::from(state) != TCP_CLOSE {
            return Ok(());
        }
        try_sock_fentry(sk, EventKind::Listen, Hook::FentryInetListen, true)
    }
}

#[tracepoint]
pub fn listen_inet_sock_set_state(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_listen_inet_sock_set_state(&ctx).is_err() {
        count_error(ErrorSlot::Listen);
    }
    0
}

fn try_listen_inet_sock_set_state(ctx: &TracePointContext) -> Res<()> {
    let Some(family) = tracepoint_family(ctx, TCP_LISTEN) else {
        return Ok(());
    };
    // The bound address is the socket's already (get_port() only picks the port): a loopback
    // listen the policy allows in any case is not sent in the default mode.
    let scope = scope();
    if !send_all(&scope) && scope.skip_loopback_listens == 1 && loopback(ctx, family) {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if off!(sock_valid) != 1 {
        return emit_from_tracepoint(ctx, family, EventKind::Listen, Wake::Now);
    }
    // A record still parked for this thread is one no listen(2) returned for (io_uring): send it
    // with the port its socket has now, unless the daemon's sweep already did.
    if !none_parked(Parked::Listen)
        && let Some(p) = LISTEN_PENDING.get_ptr(pid_tgid)
    {
        // SAFETY: `p` is this thread's LISTEN_PENDING value (non-NULL checked), readable for
        // this run; local_port has no precondition.
        unsafe { send_claimed(p, pid_tgid, local_port((*p).sk as *const u8).ok()) };
    }
    // SAFETY: every byte of PendingListen is an integer; zero is a valid value.
    let mut pending: PendingListen = unsafe { core::mem::zeroed() };
    // SAFETY: `pending` is a local, valid for writes of its SockEvent.
    unsafe { fill_from_tracepoint(ctx, &raw mut pending.event, family, EventKind::Listen)? };
    pending.sk = tracepoint_sk(ctx) as u64;
    if LISTEN_PENDING.insert(pid_tgid, pending, 0).is_ok() {
        parked_one(Parked::Listen);
    } else {
        // Map full: send now, as the plain tracepoint would, rather than lose the listen.
        // SAFETY: `pending` is a local PendingListen.
        unsafe { send(&raw const pending, None) };
    }
    Ok(())
}

#[tracepoint]
pub fn listen_sys_exit_listen(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_listen_sys_exit_listen(&ctx).is_err() {
        count_error(ErrorSlot::Listen);
    }
    0
}

fn try_listen_sys_exit_listen(ctx: &TracePointContext) -> Res<()> {
    if none_parked(Parked::Listen) {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(p) = LISTEN_PENDING.get_ptr(pid_tgid) else {
        // Not a TCP socket, already listening, failed before TCP_LISTEN, or sent at once.
        return Ok(());
    };
    // SAFETY: an aligned i64 field of the record.
    let ret: i64 = unsafe { tp_field(ctx, TP_SYS_EXIT_RET) };
    if ret != 0 {
        // get_port() or hash() failed: the socket is back in TCP_CLOSE and nothing listens.
        if LISTEN_PENDING.remove(pid_tgid).is_ok() {
            unparked_one(Parked::Listen);
        }
        return Ok(());
    }
    // get_port() has bound the port by now (autobind included).
    // SAFETY: `p` is this thread's LISTEN_PENDING value (non-NULL checked), which the kernel
    // keeps valid for this run of the program; local_port has no precondition.
    let port = unsafe { local_port((*p).sk as *const u8) };
    // SAFETY: as above.
    unsafe { send_claimed(p, pid_tgid, port.ok()) };
    port.map(|_| ())
}

/// Sends this thread's parked record at `p` with `sport` (when known and not 0) unless another
/// context (the daemon's sweep) already did, and removes it. The copy into the ring buffer is
/// made before the claim, so that it never reads a slot reused after the delete; the loser of the
/// claim discards its copy.
///
/// # Safety
/// `p` must be readable as one `PendingListen`: the `LISTEN_PENDING` value of `owner`.
#[inline(always)]
unsafe fn send_claimed(p: *const PendingListen, owner: u64, sport: Option<u16>) {
    let Some(mut entry) = EVENTS.reserve::<SockEvent>(0) else {
        if LISTEN_PENDING.remove(owner).is_ok() {
            unparked_one(Parked::Listen);
            count_drop();
        }
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `p` is readable as one PendingListen (the caller's contract); `ev` comes from
    // RingBufEntry::as_mut_ptr and is valid for writes of one SockEvent until submit or discard.
    // Ring-buffer memory does not overlap a map value.
    unsafe {
        core::ptr::copy_nonoverlapping(&raw const (*p).event, ev, 1);
        if let Some(port) = sport.filter(|&port| port != 0) {
            (*ev).sport = port;
        }
    }
    if LISTEN_PENDING.remove(owner).is_ok() {
        unparked_one(Parked::Listen);
        entry.submit(Wake::Now.flags());
    } else {
        entry.discard(0);
    }
}

/// Copies the record at `p` into the ring buffer, with `sport` when it is known and not 0. A
/// full ring buffer is counted in `DROPS`.
///
/// # Safety
/// `p` must be readable as one `PendingListen` (a `LISTEN_PENDING` value or a local).
#[inline(always)]
unsafe fn send(p: *const PendingListen, sport: Option<u16>) {
    let Some(mut entry) = EVENTS.reserve::<SockEvent>(0) else {
        count_drop();
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `p` is readable as one PendingListen (the caller's contract); `ev`
    // comes from RingBufEntry::as_mut_ptr and is valid for writes of one SockEvent until submit.
    // Ring-buffer memory does not overlap a map value or the stack.
    unsafe {
        core::ptr::copy_nonoverlapping(&raw const (*p).event, ev, 1);
        if let Some(port) = sport.filter(|&port| port != 0) {
            (*ev).sport = port;
        }
    }
    entry.submit(Wake::Now.flags());
}

/// Whether the tracepoint's socket is bound to a loopback address ([`is_loopback`]).
#[inline(always)]
fn loopback(ctx: &TracePointContext, family: u16) -> bool {
    // Loads from the record, not probe reads: the address fields are 4- and 8-byte aligned.
    // SAFETY: aligned integer-sized parts of the byte-array fields of the record (see sock.rs).
    let addr: [u8; 16] = unsafe {
        if family == AF_INET6 {
            let hi: u64 = tp_field(ctx, TP_SADDR_V6);
            let lo: u64 = tp_field(ctx, TP_SADDR_V6 + 8);
            let mut a = [0u8; 16];
            a[..8].copy_from_slice(&hi.to_ne_bytes());
            a[8..].copy_from_slice(&lo.to_ne_bytes());
            a
        } else {
            let v4: u32 = tp_field(ctx, TP_SADDR);
            widen(v4.to_ne_bytes())
        }
    };
    is_loopback(family, &addr)
}
