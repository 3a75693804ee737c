//! `pam`: uretprobes on libpam's public entry points `pam_authenticate`, `pam_acct_mgmt` and
//! `pam_open_session`, in processes running a watched SSH server executable. Only the return
//! value is read (`PAM_SUCCESS` is 0): never an argument, a password or libpam's private
//! `pam_handle`. Userspace infers the authentication method from which calls succeeded.

use aya_ebpf::{macros::uretprobe, programs::RetProbeContext};
use monitor_common::{EXE_SSH_SERVER, ErrorSlot, EventKind, Hook, PamCall, PamEvent};

use crate::{
    scope::Wake,
    shared::{
        Res, count_error, current_exe_flags, current_tgid, emit, fill_header, floor, is_monitor,
    },
};

#[uretprobe]
pub fn pam_authenticate(ctx: RetProbeContext) -> u32 {
    if floor() {
        return 0;
    }
    returned(&ctx, PamCall::Authenticate)
}

#[uretprobe]
pub fn pam_acct_mgmt(ctx: RetProbeContext) -> u32 {
    if floor() {
        return 0;
    }
    returned(&ctx, PamCall::AcctMgmt)
}

#[uretprobe]
pub fn pam_open_session(ctx: RetProbeContext) -> u32 {
    if floor() {
        return 0;
    }
    returned(&ctx, PamCall::OpenSession)
}

#[inline(always)]
fn returned(ctx: &RetProbeContext, call: PamCall) -> u32 {
    if try_returned(ctx, call).is_err() {
        count_error(ErrorSlot::Pam);
    }
    0
}

#[inline(always)]
fn try_returned(ctx: &RetProbeContext, call: PamCall) -> Res<()> {
    if is_monitor(current_tgid()) || current_exe_flags() & EXE_SSH_SERVER == 0 {
        return Ok(());
    }
    let ret: i32 = ctx.ret();
    emit::<PamEvent>(Wake::Now, |ev| {
        // SAFETY: `ev` comes from RingBufEntry::as_mut_ptr and is valid for writes of one
        // PamEvent until `emit` submits or discards it; its fields are integers.
        unsafe {
            fill_header(&raw mut (*ev).header, EventKind::Pam, Hook::UretprobePam);
            (*ev).call = call as u32;
            (*ev).ret = ret;
        }
        Ok(())
    })
}
