//! `exec`: `sched:sched_process_exec`, fired from `exec_binprm()` once the new program is in
//! place, for execve, execveat and fexecve alike. `current` is already the new program: its
//! `mm->exe_file` is the executable (resolved through symlinks and `/dev/fd/N`; its inode gives
//! the file's identity: device, inode number, size, mtime) and `mm->arg_start..arg_end` its argv,
//! freshly copied onto the new stack.

use aya_ebpf::{
    EbpfContext as _,
    helpers::generated::{bpf_probe_read_kernel_str, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use monitor_common::{
    ARGS_LEN, EXE_LEN, EXEC_ARGS_TRUNCATED, EXEC_EXE_FILE_ID, EXEC_EXE_RESOLVED,
    EXEC_EXE_TRUNCATED, EXEC_FILENAME_TRUNCATED, ErrorSlot, EventKind, ExecEvent, FILENAME_LEN,
    Hook,
};

use crate::{
    path::file_path,
    scope::{Wake, current_marked, mark_fresh},
    shared::{
        EFAULT, Res, count_error, current_task, current_tgid, emit, fill_header, floor, is_monitor,
        off, offsets_valid, read_kernel, read_ptr,
    },
};

// Field offsets of `sched:sched_process_exec` (stable since it was added in Linux 3.4).
const TP_FILENAME: usize = 8;
const TP_OLD_PID: usize = 16;

#[tracepoint]
pub fn exec_sched_process_exec(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_exec_sched_process_exec(&ctx).is_err() {
        count_error(ErrorSlot::Exec);
    }
    0
}

fn try_exec_sched_process_exec(ctx: &TracePointContext) -> Res<()> {
    let tgid = current_tgid();
    if is_monitor(tgid) {
        return Ok(());
    }
    // Every exec is sent (the process table needs them all), but only one known to be under a
    // web server or run as a web server's user wakes the daemon: an exec record is the whole
    // cost of a wake-up (a self-IPI for the ring buffer's irq_work, then the daemon's switch-in)
    // on every program start of the host otherwise. A process too new for userspace to have
    // marked (its web server exec'd within the last flush interval) is read at the next flush
    // tick, 10 ms at most: later, never lost.
    let wake = Wake::when(current_marked(tgid));
    mark_fresh(tgid);
    // SAFETY: `ev` comes from RingBufEntry::as_mut_ptr and is valid for writes of one ExecEvent
    // until `emit` submits or discards it.
    emit::<ExecEvent>(wake, |ev| unsafe { fill_exec(ctx, ev) })
}

/// Fills the record in place (it is 3 KiB: it never touches the stack). Failing to resolve the
/// exe, its inode identity or argv still sends the record, with the flag or length saying what is
/// missing, and counts an error.
///
/// # Safety
/// `ev` must be valid for writes of one `ExecEvent`; it may be uninitialized.
#[inline(always)]
unsafe fn fill_exec(ctx: &TracePointContext, ev: *mut ExecEvent) -> Res<()> {
    // SAFETY: `ev` is valid for writes (the caller's contract); its fields are integers and byte
    // arrays, so assigning drops nothing. `read_at` probe-reads integer fields of the record.
    // bpf_probe_read_kernel_str writes at most FILENAME_LEN bytes, the size of `filename`, and
    // fails instead of faulting if `src` (inside the record, from its __data_loc) is bad.
    // read_ptr has no precondition, and exe_path and args get the same valid `ev`.
    unsafe {
        fill_header(
            &raw mut (*ev).header,
            EventKind::Exec,
            Hook::TracepointSchedProcessExec,
        );
        (*ev).old_tid = ctx.read_at::<u32>(TP_OLD_PID)?;
        (*ev)._pad0 = 0;
        let mut flags = 0;

        // __data_loc: low 16 bits offset from the record start, high 16 bits length with NUL.
        let loc: u32 = ctx.read_at(TP_FILENAME)?;
        let src = ctx
            .as_ptr()
            .cast::<u8>()
            .wrapping_add((loc & 0xffff) as usize);
        let ret = bpf_probe_read_kernel_str(
            (&raw mut (*ev).filename).cast(),
            FILENAME_LEN as u32,
            src.cast(),
        );
        if ret <= 0 {
            return Err(if ret == 0 { EFAULT } else { ret as i32 });
        }
        (*ev).filename_len = (ret - 1) as u32;
        if (loc >> 16) as usize > FILENAME_LEN {
            flags |= EXEC_FILENAME_TRUNCATED;
        }

        (*ev).exe_len = 0;
        (*ev).args_len = 0;
        (*ev).exe_ino = 0;
        (*ev).exe_size = 0;
        (*ev).exe_mtime_sec = 0;
        (*ev).exe_mtime_nsec = 0;
        (*ev).exe_dev = 0;
        if offsets_valid() {
            match read_ptr(current_task(), off!(task_mm)) {
                Ok(mm) => {
                    match exe_path(mm, ev) {
                        Ok(f) => flags |= f,
                        Err(_) => count_error(ErrorSlot::Exec),
                    }
                    if off!(file_id_valid) == 1 {
                        match exe_file_id(mm, ev) {
                            Ok(f) => flags |= f,
                            Err(_) => count_error(ErrorSlot::Exec),
                        }
                    }
                    match args(mm, ev) {
                        Ok(f) => flags |= f,
                        Err(_) => count_error(ErrorSlot::Exec),
                    }
                }
                Err(_) => count_error(ErrorSlot::Exec),
            }
        }
        (*ev).flags = flags;
    }
    Ok(())
}

/// `mm->exe_file` → `ev.exe`; returns the flags to set.
///
/// # Safety
/// `ev` must be valid for writes of one `ExecEvent`. `mm` may be any address: it is only read
/// through `bpf_probe_read_kernel`.
#[inline(always)]
unsafe fn exe_path(mm: *const u8, ev: *mut ExecEvent) -> Res<u32> {
    // SAFETY: read_ptr has no precondition; `exe` is EXE_LEN bytes of the valid `ev`, the
    // `DST_MAX` that file_path may write.
    unsafe {
        let file = read_ptr(mm, off!(mm_exe_file))?;
        let p = file_path::<EXE_LEN>(file, (&raw mut (*ev).exe).cast())?;
        (*ev).exe_len = p.len;
        let mut flags = EXEC_EXE_RESOLVED;
        if p.truncated {
            flags |= EXEC_EXE_TRUNCATED;
        }
        Ok(flags)
    }
}

/// `mm->exe_file->f_inode` → the `exe_*` identity fields (inode number, size, mtime, the
/// filesystem's `s_dev`); returns the flag to set. Nothing is written unless every read worked,
/// so a failure leaves the zeroes and no flag.
///
/// # Safety
/// `ev` must be valid for writes of one `ExecEvent`. `mm` may be any address: it is only read
/// through `bpf_probe_read_kernel`.
#[inline(always)]
unsafe fn exe_file_id(mm: *const u8, ev: *mut ExecEvent) -> Res<u32> {
    // SAFETY: read_ptr and read_kernel have no precondition (probe reads of pointers and
    // integers, valid for any bits); `ev` is valid for writes (the caller's contract) and its
    // fields are integers.
    unsafe {
        let file = read_ptr(mm, off!(mm_exe_file))?;
        let inode = read_ptr(file, off!(file_f_inode))?;
        let ino: u64 = read_kernel(inode, off!(inode_i_ino))?;
        let size: u64 = read_kernel(inode, off!(inode_i_size))?;
        let mtime_sec: i64 = read_kernel(inode, off!(inode_i_mtime_sec))?;
        let mtime_nsec: u32 = read_kernel(inode, off!(inode_i_mtime_nsec))?;
        let sb = read_ptr(inode, off!(inode_i_sb))?;
        let dev: u32 = read_kernel(sb, off!(super_block_s_dev))?;
        (*ev).exe_ino = ino;
        (*ev).exe_size = size;
        (*ev).exe_mtime_sec = mtime_sec;
        (*ev).exe_mtime_nsec = mtime_nsec;
        (*ev).exe_dev = dev;
        Ok(EXEC_EXE_FILE_ID)
    }
}

/// `mm->arg_start..arg_end` (user memory of the new program) → `ev.args`.
///
/// # Safety
/// `ev` must be valid for writes of one `ExecEvent`. `mm` may be any address: it is only read
/// through `bpf_probe_read_kernel`.
#[inline(always)]
unsafe fn args(mm: *const u8, ev: *mut ExecEvent) -> Res<u32> {
    // SAFETY: read_kernel of two u64s; bpf_probe_read_user writes `len <= ARGS_LEN` bytes, the
    // size of `args` in the valid `ev`, and fails instead of faulting on a bad user address.
    unsafe {
        let start: u64 = read_kernel(mm, off!(mm_arg_start))?;
        let end: u64 = read_kernel(mm, off!(mm_arg_end))?;
        let mut len = end.saturating_sub(start) as usize;
        let mut flags = 0;
        if len > ARGS_LEN {
            len = ARGS_LEN;
            flags |= EXEC_ARGS_TRUNCATED;
        }
        let ret = bpf_probe_read_user(
            (&raw mut (*ev).args).cast(),
            len as u32,
            start as *const core::ffi::c_void,
        );
        if ret != 0 {
            return Err(ret as i32);
        }
        (*ev).args_len = len as u32;
        Ok(flags)
    }
}
