//! `bind`: an open UDP port. A UDP socket bound by bind(2) to a port its program chose (not 0)
//! is reported as a listen record with protocol UDP once the bind has succeeded.
//!
//! UDP has no listen(2) and no state change to see: a bound UDP socket receives datagrams from
//! anyone, which is what a listening TCP socket is. `syscalls:sys_enter_bind` reads the port the
//! caller asks for (user memory, `sin_port` and `sin6_port` both sit at byte 2) and, when it is
//! not 0, finds the descriptor's socket through the file table (as `accept` and `udp` do); a UDP
//! socket over IPv4 or IPv6 is parked per thread. `syscalls:sys_exit_bind` sends the record only
//! when bind(2) returned 0, with the address and port the socket has then (`skc_rcv_saddr`,
//! `skc_num`). A failed bind (`EADDRINUSE`, `EACCES`, a second bind) sends nothing.
//!
//! What is never reported: autobind. A client's first `sendto`/`connect` on an unbound socket
//! (every DNS lookup) binds an ephemeral port inside the kernel without bind(2), and bind(2) to
//! port 0 asks the kernel to pick one (`dig` does that): neither is a port the program chose, and
//! neither reaches userspace in any mode. A bind to a loopback address, when the policy allows
//! every loopback listener (`Scope::skip_loopback_listens`), stays here in the default mode, like
//! a TCP loopback listen.
//!
//! Not seen: binds that do not go through bind(2): `io_uring`'s `IORING_OP_BIND` (Linux 6.11+;
//! hooking every `io_uring` completion to find the few binds would cost every `io_uring` user),
//! the kernel's own UDP sockets (`WireGuard`, VXLAN and other tunnels bind with
//! `kernel_bind()`), and 32-bit processes, whose `socketcall(2)` and compat syscalls do not fire
//! the 64-bit syscall tracepoints. The start-up baseline (`/proc/<pid>/net/udp`) shows all of
//! them at the next start.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use monitor_common::{BIND_TRACKED_THREADS, ErrorSlot, EventKind, Hook, IPPROTO_UDP, SockEvent};

use crate::{
    scope::{Wake, scope, send_all},
    shared::{
        Parked, Res, count_error, emit, fill_header, floor, is_monitor, none_parked, off,
        offsets_valid, parked_one, unparked_one,
    },
    sock::{fd_sock, inet_family, is_loopback, local_addr, local_port, tp_field},
};

/// UDP sockets being bound, by `pid_tgid`. A plain hash, not an LRU: a full map refuses the
/// insert (counted as an error) rather than evicting another thread's bind without a trace. Only
/// the owning thread touches its key, and `sys_exit_bind` (attached before `sys_enter_bind`)
/// always clears it.
#[map(name = "BIND_PENDING")]
static BIND_PENDING: HashMap<u64, PendingBind> = HashMap::with_max_entries(BIND_TRACKED_THREADS, 0);

/// A UDP socket seen at `sys_enter_bind`.
#[repr(C)]
#[derive(Clone, Copy)]
struct PendingBind {
    /// `struct sock *`.
    sk: u64,
    /// `AF_INET` or `AF_INET6`.
    family: u32,
    _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<PendingBind>() == 16);

// `syscalls:sys_enter_bind` (`int fd, struct sockaddr *umyaddr, int addrlen`): after the common
// fields and `__syscall_nr`, one 8-byte slot per argument; `sys_exit_bind`: `ret` at 16.
const TP_ARG0: usize = 16;
const TP_ARG1: usize = 24;
const TP_ARG2: usize = 32;
const TP_SYS_EXIT_RET: usize = 16;
/// The shortest address bind(2) reads the port from: `sa_family` and the port.
const SOCKADDR_PORT_END: i32 = 4;

#[tracepoint]
pub fn bind_sys_enter_bind(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_bind_sys_enter_bind(&ctx).is_err() {
        count_error(ErrorSlot::Listen);
    }
    0
}

fn try_bind_sys_enter_bind(ctx: &TracePointContext) -> Res<()> {
    if !offsets_valid() || off!(files_valid) != 1 || off!(sock_valid) != 1 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_monitor((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    // SAFETY: aligned u64 argument slots of the record.
    let (fd, addr, len) = unsafe {
        (
            tp_field::<u64>(ctx, TP_ARG0),
            tp_field::<u64>(ctx, TP_ARG1),
            tp_field::<u64>(ctx, TP_ARG2),
        )
    };
    if addr == 0 || (len as i32) < SOCKADDR_PORT_END {
        // The kernel refuses it (EFAULT, EINVAL).
        return Ok(());
    }
    // The port the caller asks for, network byte order; 0 lets the kernel pick one.
    // SAFETY: bpf_probe_read_user copies two bytes (valid for any bits) and fails instead of
    // faulting on a bad address.
    let port: [u8; 2] = unsafe { bpf_probe_read_user((addr + 2) as *const [u8; 2])? };
    if port == [0, 0] {
        return Ok(());
    }
    // `int fd` in an 8-byte slot: a negative one is refused with EBADF.
    let Ok(fd) = u32::try_from(fd as i32) else {
        return Ok(());
    };
    // SAFETY: fd_sock and inet_family have no precondition.
    let Some(sk) = (unsafe { fd_sock(fd)? }) else {
        return Ok(());
    };
    // SAFETY: as above.
    let Some(family) = (unsafe { inet_family(sk, IPPROTO_UDP)? }) else {
        return Ok(());
    };
    let pending = PendingBind {
        sk: sk as u64,
        family: u32::from(family),
        _pad0: 0,
    };
    BIND_PENDING.insert(pid_tgid, pending, 0)?;
    parked_one(Parked::Bind);
    Ok(())
}

#[tracepoint]
pub fn bind_sys_exit_bind(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_bind_sys_exit_bind(&ctx).is_err() {
        count_error(ErrorSlot::Listen);
    }
    0
}

fn try_bind_sys_exit_bind(ctx: &TracePointContext) -> Res<()> {
    if none_parked(Parked::Bind) {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: a BIND_PENDING value is copied out at once; it holds only integers.
    let Some(pending) = (unsafe { BIND_PENDING.get(pid_tgid) }).copied() else {
        // Not a UDP socket, port 0, or the monitor itself.
        return Ok(());
    };
    if BIND_PENDING.remove(pid_tgid).is_ok() {
        unparked_one(Parked::Bind);
    }
    // SAFETY: an aligned i64 field of the record.
    let ret: i64 = unsafe { tp_field(ctx, TP_SYS_EXIT_RET) };
    if ret != 0 {
        // Nothing was bound.
        return Ok(());
    }
    let sk = pending.sk as *const u8;
    let family = pending.family as u16;
    // SAFETY: local_addr has no precondition (`sk` is only probe-read).
    let saddr = unsafe { local_addr(sk, family)? };
    let scope = scope();
    let allowed = scope.skip_loopback_listens == 1 && is_loopback(family, &saddr);
    if allowed && !send_all(&scope) {
        return Ok(());
    }
    // SAFETY: `ev` comes from RingBufEntry::as_mut_ptr and is valid for writes of one SockEvent
    // until `emit` submits or discards it; its fields are integers and byte arrays, so assigning
    // drops nothing; local_port has no precondition.
    emit::<SockEvent>(Wake::when(!allowed), |ev| unsafe {
        fill_header(
            &raw mut (*ev).header,
            EventKind::Listen,
            Hook::TracepointSysExitBind,
        );
        (*ev).family = family;
        (*ev).protocol = IPPROTO_UDP;
        (*ev).sport = local_port(sk)?;
        (*ev).dport = 0;
        (*ev).saddr = saddr;
        (*ev).daddr = [0; 16];
        Ok(())
    })
}
