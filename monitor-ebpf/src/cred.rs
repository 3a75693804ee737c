//! `cred`: the real uid of a process changed, at `syscalls:sys_exit_setuid`, `sys_exit_setreuid`
//! and `sys_exit_setresuid` (one program attached to the three exits, one to the three enters);
//! and a process became a session leader, at `sys_exit_setsid`.
//!
//! This is how an SSH session drops to its user (OpenSSH's user child calls setresuid). Only a
//! change of the *real* uid is reported: the enter program remembers it, the exit program
//! compares after a successful call. sshd's monitor swaps only its effective uid to read
//! `authorized_keys`, and a process calling setresuid(-1, -1, -1) in a loop changes nothing, so
//! neither costs a record.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_uid_gid},
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use monitor_common::{CRED_TRACKED_THREADS, CredEvent, ErrorSlot, EventKind, Hook, SetsidEvent};

use crate::{
    scope::Wake,
    shared::{Res, count_error, emit, fill_header, floor, is_monitor},
};

/// `pid_tgid` → real uid at the syscall's entry. LRU: a lost entry only means the exit reports
/// the call even if the uid did not change.
#[map(name = "CRED_ENTER")]
static CRED_ENTER: LruHashMap<u64, u32> = LruHashMap::with_max_entries(CRED_TRACKED_THREADS, 0);

// `ret` of the `syscalls:sys_exit_*` records.
const TP_SYS_EXIT_RET: usize = 16;

#[tracepoint]
pub fn cred_sys_enter_setuid(_ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_cred_sys_enter_setuid().is_err() {
        count_error(ErrorSlot::Cred);
    }
    0
}

fn try_cred_sys_enter_setuid() -> Res<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_monitor((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    CRED_ENTER.insert(pid_tgid, bpf_get_current_uid_gid() as u32, 0)
}

#[tracepoint]
pub fn cred_sys_exit_setuid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_cred_sys_exit_setuid(&ctx).is_err() {
        count_error(ErrorSlot::Cred);
    }
    0
}

fn try_cred_sys_exit_setuid(ctx: &TracePointContext) -> Res<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_monitor((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    // u32::MAX: the entry was not seen (a plain u32, not an Option: LLVM's BPF backend can leave
    // half of an Option's register pair unwritten, which the verifier refuses).
    let old: u32 = match CRED_ENTER.get_ptr(pid_tgid) {
        // SAFETY: a CRED_ENTER value (non-NULL) is a u32 the kernel keeps valid for this run; it
        // is copied out before the key is removed.
        Some(p) => unsafe { *p },
        None => u32::MAX,
    };
    let _ = CRED_ENTER.remove(pid_tgid);
    // SAFETY: read_at probe-reads an i64 (valid for any bits) from the record.
    let ret: i64 = unsafe { ctx.read_at(TP_SYS_EXIT_RET)? };
    let new = bpf_get_current_uid_gid() as u32;
    if ret != 0 || old == new {
        return Ok(());
    }
    emit::<CredEvent>(Wake::Now, |ev| {
        // SAFETY: `ev` comes from RingBufEntry::as_mut_ptr and is valid for writes of one
        // CredEvent until `emit` submits or discards it; its fields are integers.
        unsafe {
            fill_header(
                &raw mut (*ev).header,
                EventKind::Cred,
                Hook::TracepointSysExitSetuid,
            );
            (*ev).old_uid = old;
            (*ev)._pad0 = 0;
        }
        Ok(())
    })
}

#[tracepoint]
pub fn cred_sys_exit_setsid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_cred_sys_exit_setsid(&ctx).is_err() {
        count_error(ErrorSlot::Cred);
    }
    0
}

/// An SSH session's program calls `setsid()` before it execs; a successful call can happen once per
/// process (a session leader cannot call it again), so this costs at most one record per fork.
fn try_cred_sys_exit_setsid(ctx: &TracePointContext) -> Res<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_monitor((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    // SAFETY: read_at probe-reads an i64 (valid for any bits) from the record.
    let ret: i64 = unsafe { ctx.read_at(TP_SYS_EXIT_RET)? };
    let Ok(sid) = u32::try_from(ret) else {
        return Ok(());
    };
    emit::<SetsidEvent>(Wake::Now, |ev| {
        // SAFETY: `ev` comes from RingBufEntry::as_mut_ptr and is valid for writes of one
        // SetsidEvent until `emit` submits or discards it; its fields are integers.
        unsafe {
            fill_header(
                &raw mut (*ev).header,
                EventKind::Setsid,
                Hook::TracepointSysExitSetsid,
            );
            (*ev).sid = sid;
            (*ev)._pad0 = 0;
        }
        Ok(())
    })
}
