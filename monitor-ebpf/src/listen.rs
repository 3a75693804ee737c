//! `listen`: a TCP socket starts listening.
//!
//! Preferred: fentry on `inet_listen(struct socket *sock, int backlog)`; it fires on entry, so a
//! socket that was never bound shows port 0 (autobind happens later, in
//! `inet_csk_listen_start`). Fallback: `sock:inet_sock_set_state` with newstate `TCP_LISTEN`,
//! fired from `inet_csk_listen_start` once the port is bound.

use aya_ebpf::{
    macros::{fentry, tracepoint},
    programs::{FEntryContext, TracePointContext},
};
use monitor_common::{ErrorSlot, EventKind, Hook};

use crate::{
    shared::{Res, count_error},
    sock::{TCP_LISTEN, socket_sk, try_sock_fentry, try_sock_tracepoint},
};

#[fentry(function = "inet_listen")]
pub fn listen_inet_listen(ctx: FEntryContext) -> u32 {
    if try_listen_inet_listen(&ctx).is_err() {
        count_error(ErrorSlot::Listen);
    }
    0
}

fn try_listen_inet_listen(ctx: &FEntryContext) -> Res<()> {
    let sock: *const u8 = ctx.arg(0);
    unsafe {
        let sk = socket_sk(sock)?;
        try_sock_fentry(sk, EventKind::Listen, Hook::FentryInetListen, true)
    }
}

#[tracepoint]
pub fn listen_inet_sock_set_state(ctx: TracePointContext) -> u32 {
    if try_listen_inet_sock_set_state(&ctx).is_err() {
        count_error(ErrorSlot::Listen);
    }
    0
}

fn try_listen_inet_sock_set_state(ctx: &TracePointContext) -> Res<()> {
    try_sock_tracepoint(ctx, TCP_LISTEN, EventKind::Listen)
}
