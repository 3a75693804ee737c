//! Socket records shared by `listen`, `connect`, `accept` and `udp`: one reader for the
//! `sock:inet_sock_set_state` tracepoint, one for a `struct sock *` seen by an fentry program or
//! found behind a descriptor.

use aya_ebpf::{EbpfContext as _, programs::TracePointContext};
use monitor_common::{AF_INET, AF_INET6, EventKind, Hook, IPPROTO_TCP, SockEvent};

use crate::{
    scope::Wake,
    shared::{
        Res, current_task, current_tgid, emit, fill_header, is_monitor, off, read_kernel, read_ptr,
    },
};

/// `TCP_SYN_SENT`, `TCP_CLOSE` and `TCP_LISTEN` from `include/net/tcp_states.h`.
pub const TCP_SYN_SENT: i32 = 2;
pub const TCP_CLOSE: i32 = 7;
pub const TCP_LISTEN: i32 = 10;

// Field offsets of `sock:inet_sock_set_state` (include/trace/events/sock.h). Its layout has been
// stable since Linux 4.16, unlike the sched tracepoints whose offsets come from tracefs.
// `TracePointContext::read_at` reads the record with bpf_probe_read_kernel, which copies
// size_of::<T>() bytes and fails instead of faulting on a bad address; every field read here is an
// integer, a pointer or a byte array, valid for any bits. The SAFETY comments below refer to this.
const TP_SKADDR: usize = 8;
const TP_OLDSTATE: usize = 16;
const TP_NEWSTATE: usize = 20;
const TP_SPORT: usize = 24;
const TP_DPORT: usize = 26;
const TP_FAMILY: usize = 28;
const TP_PROTOCOL: usize = 30;
pub const TP_SADDR: usize = 32;
const TP_DADDR: usize = 36;
pub const TP_SADDR_V6: usize = 40;
const TP_DADDR_V6: usize = 56;

/// Loads a field of a tracepoint record straight from the context: the verifier allows aligned
/// reads of a tracepoint program's context (`tp_prog_is_valid_access()`), which cost a load, not
/// a helper call. Volatile, so that the compiler neither merges nor widens the load.
///
/// # Safety
/// `T` must be an integer type and `offset` a multiple of its size, at least 8 (past the common
/// fields), inside the record.
#[inline(always)]
pub unsafe fn tp_field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: the caller's contract; the verifier checks the access at load time.
    unsafe { core::ptr::read_volatile(ctx.as_ptr().cast::<u8>().add(offset).cast::<T>()) }
}

/// The tracepoint already converts ports to host byte order (`ntohs(inet->inet_sport)`).
///
/// The socket family when the tracepoint reports a TCP/IPv4-or-IPv6 socket of another task than
/// the monitor entering `want_state`; `None` when the record is not for us.
#[inline(always)]
pub fn tracepoint_family(ctx: &TracePointContext, want_state: i32) -> Option<u16> {
    // SAFETY: aligned integer fields of the record (see TP_SKADDR).
    let newstate: i32 = unsafe { tp_field(ctx, TP_NEWSTATE) };
    if newstate != want_state {
        return None;
    }
    // SAFETY: as above.
    let protocol: u16 = unsafe { tp_field(ctx, TP_PROTOCOL) };
    // SAFETY: as above.
    let family: u16 = unsafe { tp_field(ctx, TP_FAMILY) };
    if protocol != IPPROTO_TCP || (family != AF_INET && family != AF_INET6) {
        return None;
    }
    if is_monitor(current_tgid()) {
        return None;
    }
    Some(family)
}

/// Writes the tracepoint's record straight into the ring buffer.
#[inline(always)]
pub fn emit_from_tracepoint(
    ctx: &TracePointContext,
    family: u16,
    kind: EventKind,
    wake: Wake,
) -> Res<()> {
    // SAFETY: `ev` comes from RingBufEntry::as_mut_ptr and is valid for writes of one SockEvent
    // until `emit` submits or discards it.
    emit::<SockEvent>(wake, |ev| unsafe {
        fill_from_tracepoint(ctx, ev, family, kind)
    })
}

/// The `struct sock *` the tracepoint is about (`skaddr`).
#[inline(always)]
pub fn tracepoint_sk(ctx: &TracePointContext) -> *const u8 {
    // SAFETY: an aligned pointer-sized field of the record (see TP_SKADDR); it is only ever
    // followed through probe reads.
    unsafe { tp_field::<u64>(ctx, TP_SKADDR) as *const u8 }
}

/// The remote address of the tracepoint's socket in `WATCHED_NETS`' key shape (IPv4 as
/// `::ffff:a.b.c.d`).
#[inline(always)]
pub fn tracepoint_daddr_v6(ctx: &TracePointContext, family: u16) -> Res<[u8; 16]> {
    // SAFETY: probe reads of byte-array fields of the record (see TP_SKADDR).
    unsafe {
        if family == AF_INET6 {
            ctx.read_at(TP_DADDR_V6)
        } else {
            Ok(mapped(ctx.read_at(TP_DADDR)?))
        }
    }
}

/// The state the socket leaves.
#[inline(always)]
pub fn tracepoint_oldstate(ctx: &TracePointContext) -> i32 {
    // SAFETY: an aligned i32 field of the record (see TP_SKADDR).
    unsafe { tp_field(ctx, TP_OLDSTATE) }
}

/// The local port (`ntohs(inet->inet_sport)`), host byte order.
#[inline(always)]
pub fn tracepoint_sport(ctx: &TracePointContext) -> u16 {
    // SAFETY: an aligned u16 field of the record (see TP_SKADDR).
    unsafe { tp_field(ctx, TP_SPORT) }
}

/// `sk->__sk_common.skc_num`: the local port in host byte order, 0 until one is bound. Needs the
/// `sock_valid` offsets.
///
/// # Safety
/// No precondition: `sk` may be any address, it is only read through `bpf_probe_read_kernel`.
#[inline(always)]
pub unsafe fn local_port(sk: *const u8) -> Res<u16> {
    // SAFETY: read_kernel of a u16, valid for any bits.
    unsafe { read_kernel(sk, off!(skc_num)) }
}

/// Fills `ev` from the tracepoint record (`ev` may be ring-buffer or map memory).
///
/// # Safety
/// `ev` must be valid for writes of one `SockEvent`; it may be uninitialized.
#[inline(always)]
pub unsafe fn fill_from_tracepoint(
    ctx: &TracePointContext,
    ev: *mut SockEvent,
    family: u16,
    kind: EventKind,
) -> Res<()> {
    // SAFETY: `ev` is valid for writes (the caller's contract) and its fields are integers and
    // byte arrays, so assigning drops nothing; `saddr` and `daddr` are read only after being
    // written. Each `read_at` is a probe read of an integer or byte-array field (see TP_SKADDR).
    unsafe {
        fill_header(
            &raw mut (*ev).header,
            kind,
            Hook::TracepointInetSockSetState,
        );
        (*ev).family = family;
        (*ev).protocol = IPPROTO_TCP;
        (*ev).sport = ctx.read_at(TP_SPORT)?;
        (*ev).dport = ctx.read_at(TP_DPORT)?;
        if family == AF_INET6 {
            (*ev).saddr = ctx.read_at(TP_SADDR_V6)?;
            (*ev).daddr = ctx.read_at(TP_DADDR_V6)?;
            // An IPv4 connect through an AF_INET6 socket (`::ffff:a.b.c.d`) reaches
            // TCP_SYN_SENT inside tcp_v4_connect(). Kernels without inet_bhash2_update_saddr()
            // (older than 6.1) write the mapped source into sk_v6_rcv_saddr only after that
            // returns, so the v6 source is still `::`: take the IPv4 source the tracepoint has.
            if is_v4_mapped(&(*ev).daddr) && (*ev).saddr == [0; 16] {
                let v4: [u8; 4] = ctx.read_at(TP_SADDR)?;
                (*ev).saddr = mapped(v4);
            }
        } else {
            (*ev).saddr = widen(ctx.read_at(TP_SADDR)?);
            (*ev).daddr = widen(ctx.read_at(TP_DADDR)?);
        }
    }
    Ok(())
}

/// Emits a record for the `struct sock *` an fentry program was handed. `listen` is true for
/// `inet_listen` (no remote side yet). Needs `sock_valid` offsets (the loader does not attach the
/// fentry programs without them).
///
/// # Safety
/// No precondition: `sk` may be any address, it is only read through `bpf_probe_read_kernel`.
#[inline(always)]
pub unsafe fn try_sock_fentry(sk: *const u8, kind: EventKind, hook: Hook, listen: bool) -> Res<()> {
    // SAFETY: tcp_family has no precondition.
    let Some(family) = (unsafe { tcp_family(sk)? }) else {
        return Ok(());
    };
    if is_monitor(current_tgid()) {
        return Ok(());
    }
    // SAFETY: `ev` comes from RingBufEntry::as_mut_ptr and is valid for writes of one SockEvent
    // until `emit` submits or discards it; `sk` may be any address.
    emit::<SockEvent>(Wake::Now, |ev| unsafe {
        fill_from_sock(sk, ev, family, kind, hook, listen)
    })
}

/// The family of `sk` when it is a TCP socket over IPv4 or IPv6 and the socket offsets are known;
/// `None` otherwise.
///
/// # Safety
/// No precondition: `sk` may be any address, it is only read through `bpf_probe_read_kernel`.
#[inline(always)]
pub unsafe fn tcp_family(sk: *const u8) -> Res<Option<u16>> {
    // SAFETY: inet_family has no precondition.
    unsafe { inet_family(sk, IPPROTO_TCP) }
}

/// The family of `sk` when it is an IPv4 or IPv6 socket of `protocol` (`sk_protocol`) and the
/// socket offsets are known; `None` otherwise.
///
/// # Safety
/// No precondition: `sk` may be any address, it is only read through `bpf_probe_read_kernel`.
#[inline(always)]
pub unsafe fn inet_family(sk: *const u8, protocol: u16) -> Res<Option<u16>> {
    if off!(sock_valid) != 1 {
        return Ok(None);
    }
    // SAFETY: read_kernel of a u16, valid for any bits.
    let family: u16 = unsafe { read_kernel(sk, off!(skc_family))? };
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    // sk_protocol is a u16 since Linux 5.6 and an 8-bit bitfield before: read the containing
    // 32-bit word and cut the field out of it.
    let bit = off!(sk_protocol_bit_offset);
    // SAFETY: read_kernel of a u32, valid for any bits.
    let word: u32 = unsafe { read_kernel(sk, bit / 8)? };
    let bits = off!(sk_protocol_bits) & 31;
    if (word >> (bit % 8)) & ((1u32 << bits) - 1) != u32::from(protocol) {
        return Ok(None);
    }
    Ok(Some(family))
}

/// The remote address of `sk` in the `SockEvent` layout's IPv6 form: IPv4 as `::ffff:a.b.c.d`,
/// the key shape of `WATCHED_NETS`.
///
/// # Safety
/// No precondition: `sk` may be any address, it is only read through `bpf_probe_read_kernel`.
#[inline(always)]
pub unsafe fn remote_v6(sk: *const u8, family: u16) -> Res<[u8; 16]> {
    // SAFETY: read_kernel of byte arrays, valid for any bits.
    unsafe {
        if family == AF_INET6 {
            read_kernel(sk, off!(skc_v6_daddr))
        } else {
            Ok(mapped(read_kernel(sk, off!(skc_daddr))?))
        }
    }
}

/// Fills `ev` from the `struct sock *` `sk`.
///
/// # Safety
/// `ev` must be valid for writes of one `SockEvent`; it may be uninitialized. `sk` may be any
/// address: it is only read through `bpf_probe_read_kernel`.
#[inline(always)]
pub unsafe fn fill_from_sock(
    sk: *const u8,
    ev: *mut SockEvent,
    family: u16,
    kind: EventKind,
    hook: Hook,
    listen: bool,
) -> Res<()> {
    // SAFETY: `ev` is valid for writes (the caller's contract) and its fields are integers and
    // byte arrays, so assigning drops nothing; every read_kernel is of an integer or byte array.
    unsafe {
        fill_header(&raw mut (*ev).header, kind, hook);
        (*ev).family = family;
        (*ev).protocol = IPPROTO_TCP;
        // skc_num is the local port in host order; skc_dport is in network order.
        (*ev).sport = read_kernel(sk, off!(skc_num))?;
        (*ev).saddr = local_addr(sk, family)?;
        if listen {
            (*ev).dport = 0;
            (*ev).daddr = [0; 16];
        } else {
            (*ev).dport = u16::from_be(read_kernel(sk, off!(skc_dport))?);
            if family == AF_INET6 {
                (*ev).daddr = read_kernel(sk, off!(skc_v6_daddr))?;
            } else {
                (*ev).daddr = widen(read_kernel(sk, off!(skc_daddr))?);
            }
        }
    }
    Ok(())
}

/// `struct socket *` → `struct sock *` (`socket->sk`).
///
/// # Safety
/// No precondition: `sock` may be any address, it is only read through `bpf_probe_read_kernel`.
#[inline(always)]
pub unsafe fn socket_sk(sock: *const u8) -> Res<*const u8> {
    // SAFETY: read_ptr has no precondition.
    unsafe { read_ptr(sock, off!(socket_sk)) }
}

/// The local address of `sk` in the `SockEvent` layout (IPv4 in the first 4 bytes).
///
/// # Safety
/// No precondition: `sk` may be any address, it is only read through `bpf_probe_read_kernel`.
#[inline(always)]
pub unsafe fn local_addr(sk: *const u8, family: u16) -> Res<[u8; 16]> {
    // SAFETY: read_kernel of byte arrays, valid for any bits.
    unsafe {
        if family == AF_INET6 {
            read_kernel(sk, off!(skc_v6_rcv_saddr))
        } else {
            Ok(widen(read_kernel(sk, off!(skc_rcv_saddr))?))
        }
    }
}

/// The `struct sock *` behind descriptor `fd` of the current task
/// (`current->files->fdt->fd[fd]->private_data->sk`), after checking that the file is the
/// socket's own (`socket->file == file`); `None` when `fd` is not an open socket. Needs the
/// `files_valid` and `sock_valid` offsets.
///
/// # Safety
/// No precondition: every address is only read through `bpf_probe_read_kernel`.
#[inline(always)]
pub unsafe fn fd_sock(fd: u32) -> Res<Option<*const u8>> {
    // SAFETY: read_ptr / read_kernel have no precondition; the values read are pointers and
    // integers, only ever followed through further probe reads.
    unsafe {
        let files = read_ptr(current_task(), off!(task_files))?;
        let fdt = read_ptr(files, off!(files_fdt))?;
        let max_fds: u32 = read_kernel(fdt, off!(fdtable_max_fds))?;
        if fd >= max_fds {
            return Ok(None);
        }
        let fds = read_ptr(fdt, off!(fdtable_fd))?;
        let file: *const u8 = read_kernel(fds, fd.wrapping_mul(8))?;
        if file.is_null() {
            return Ok(None);
        }
        let socket: *const u8 = read_kernel(file, off!(file_private_data))?;
        if socket.is_null() || read_kernel::<*const u8>(socket, off!(socket_file))? != file {
            return Ok(None);
        }
        socket_sk(socket).map(Some)
    }
}

/// IPv4 address in the first 4 bytes, the rest zero (the `SockEvent` layout).
#[inline(always)]
pub fn widen(v4: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = v4[0];
    a[1] = v4[1];
    a[2] = v4[2];
    a[3] = v4[3];
    a
}

#[inline(always)]
pub fn mapped(v4: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[10] = 0xff;
    a[11] = 0xff;
    a[12] = v4[0];
    a[13] = v4[1];
    a[14] = v4[2];
    a[15] = v4[3];
    a
}

/// Whether `addr` (in the `SockEvent` layout of a socket of `family`) is a loopback address:
/// `127.0.0.0/8`, `::1`, or `::ffff:127.0.0.0/104`, as `netrange::is_loopback` judges it in
/// userspace.
#[inline(always)]
pub fn is_loopback(family: u16, addr: &[u8; 16]) -> bool {
    if family == AF_INET6 {
        (is_v4_mapped(addr) && addr[12] == 127) || *addr == LOOPBACK_V6
    } else {
        addr[0] == 127
    }
}

/// `::1`.
const LOOPBACK_V6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

#[inline(always)]
fn is_v4_mapped(a: &[u8; 16]) -> bool {
    a[..10] == [0; 10] && a[10] == 0xff && a[11] == 0xff
}
