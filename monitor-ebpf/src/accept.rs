//! `accept`: an inbound TCP connection accepted on a listening socket, at
//! `syscalls:sys_exit_accept` and `sys_exit_accept4` (one program attached to both). The 4-tuple
//! is read from the kernel socket behind the new descriptor
//! (`current->files->fdt->fd[ret]->private_data->sk`), never from the caller's sockaddr buffer,
//! which may be NULL or lie.
//!
//! A busy web server accepts thousands of connections a second that no rule cares about, so in
//! the default mode the record goes out only when something needs it: the accepting process runs
//! a watched executable (sshd: the login tracker joins the connection to its session), or the
//! client's address is in a loaded list (`WATCHED_NETS`). `ACCEPT_FILTER` = `ACCEPT_SEND_ALL`
//! (`--events`, or lists too large for the trie) sends every one.

use aya_ebpf::{
    macros::{map, tracepoint},
    maps::{Array, LpmTrie, lpm_trie::Key},
    programs::TracePointContext,
};
use monitor_common::{
    ACCEPT_SEND_ALL, EXE_SSH_SERVER, ErrorSlot, EventKind, Hook, SockEvent, WATCHED_NETS_MAX,
};

use crate::{
    scope::{Wake, scope},
    shared::{
        EFAULT, Res, count_error, current_exe_flags, current_tgid, emit, floor, is_monitor, off,
        offsets_valid,
    },
    sock::{fd_sock, fill_from_sock, remote_v6, tcp_family, tp_field},
};

/// The prefixes of the loaded lists (IPv4 as `::ffff:a.b.c.d/96+n`) → flags (unused here).
#[map(name = "WATCHED_NETS")]
pub(crate) static WATCHED_NETS: LpmTrie<[u8; 16], u32> =
    LpmTrie::with_max_entries(WATCHED_NETS_MAX, 0);

/// Index 0: `ACCEPT_SEND_WATCHED` or `ACCEPT_SEND_ALL`, set by userspace.
#[map(name = "ACCEPT_FILTER")]
static ACCEPT_FILTER: Array<u32> = Array::with_max_entries(1, 0);

// `ret` of the `syscalls:sys_exit_*` records (after the common fields and `__syscall_nr`).
const TP_SYS_EXIT_RET: usize = 16;

#[tracepoint]
pub fn accept_sys_exit_accept(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_accept_sys_exit_accept(&ctx).is_err() {
        count_error(ErrorSlot::Accept);
    }
    0
}

fn try_accept_sys_exit_accept(ctx: &TracePointContext) -> Res<()> {
    // Cheapest first: the return value is a load from the record.
    // SAFETY: an aligned i64 field of the record.
    let ret: i64 = unsafe { tp_field(ctx, TP_SYS_EXIT_RET) };
    let Ok(fd) = u32::try_from(ret) else {
        // A failed accept (-EAGAIN on a non-blocking listener is the common case).
        return Ok(());
    };
    if !offsets_valid() || off!(files_valid) != 1 || is_monitor(current_tgid()) {
        return Ok(());
    }
    // Whether userspace needs this accept in the current mode: every one (`--events`, or lists
    // too large for the trie), an SSH server's (the login tracker), or one from a watched network
    // (looked up once the socket is found; with no watched network there is nothing to look up).
    let all = ACCEPT_FILTER.get(0).copied() == Some(ACCEPT_SEND_ALL);
    let ssh = current_exe_flags() & EXE_SSH_SERVER != 0;
    let scope = scope();
    if !all && !ssh && scope.watched_nets != 1 {
        return Ok(());
    }
    // The descriptor accept returned is an open socket: anything else is a failed read.
    // SAFETY: fd_sock and tcp_family have no precondition.
    let sk = unsafe { fd_sock(fd)? }.ok_or(EFAULT)?;
    let Some(family) = (unsafe { tcp_family(sk)? }) else {
        return Ok(());
    };
    let watched = !ssh && scope.watched_nets == 1 && watched(sk, family)?;
    if !all && !ssh && !watched {
        return Ok(());
    }
    let alertable = ssh || watched;
    // SAFETY: `ev` comes from RingBufEntry::as_mut_ptr and is valid for writes of one SockEvent
    // until `emit` submits or discards it; `sk` may be any address.
    emit::<SockEvent>(Wake::when(alertable), |ev| unsafe {
        fill_from_sock(
            sk,
            ev,
            family,
            EventKind::Accept,
            Hook::TracepointSysExitAccept,
            false,
        )
    })
}

/// Whether the client's address is in a watched network.
#[inline(always)]
fn watched(sk: *const u8, family: u16) -> Res<bool> {
    // SAFETY: remote_v6 has no precondition.
    let remote = unsafe { remote_v6(sk, family)? };
    Ok(WATCHED_NETS.get(Key::new(128, remote)).is_some())
}
