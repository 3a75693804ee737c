//! Lineage: `sched:sched_process_fork` and `sched:sched_process_exit`, which keep the daemon's
//! process table in step with the kernel, and the kernel's own `WEB_TREE` (which processes are
//! under a web server) too.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use monitor_common::{ErrorSlot, EventKind, ExitEvent, ForkEvent, Hook, OFFSET_ABSENT};

use crate::{
    WEB_TREE,
    scope::{Wake, forget_fresh, mark_fresh},
    shared::{
        Res, count_error, current_task, current_tgid, emit, fill_header, floor, is_monitor, off,
        read_kernel, read_ptr,
    },
};

/// Threads of one group visited at most when telling a new thread from a new process.
const MAX_THREADS: u32 = 64;

#[tracepoint]
pub fn process_sched_process_fork(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_process_sched_process_fork(&ctx).is_err() {
        count_error(ErrorSlot::Fork);
    }
    0
}

fn try_process_sched_process_fork(ctx: &TracePointContext) -> Res<()> {
    let tgid = current_tgid();
    if is_monitor(tgid) {
        return Ok(());
    }
    // SAFETY: read_at probe-reads a u32 (valid for any bits) of the record; the offset comes from
    // the tracepoint's format file, and a wrong one fails the read or reads a wrong value, never
    // faults.
    let child_tid: u32 = unsafe { ctx.read_at(off!(tp_fork_child_pid) as usize)? };
    let child_tgid = child_tgid(tgid, child_tid);
    inherit_web_tree(tgid, child_tid, child_tgid);
    // A new process is fresh until userspace has handled this record (when its tgid is unknown,
    // its tid may be a thread's: a stale entry only sends a few more records).
    if child_tgid == 0 || child_tgid == child_tid {
        mark_fresh(child_tid);
    }
    // Lineage alone never raises an alert: no wake-up.
    // SAFETY: `ev` comes from RingBufEntry::as_mut_ptr and is valid for writes of one ForkEvent
    // until `emit` submits or discards it; its fields are integers.
    emit::<ForkEvent>(Wake::Later, |ev| unsafe {
        fill_header(
            &raw mut (*ev).header,
            EventKind::Fork,
            Hook::TracepointSchedProcessFork,
        );
        (*ev).child_tid = child_tid;
        (*ev).child_tgid = child_tgid;
        Ok(())
    })
}

/// A new process (not a new thread: `child_tgid == child_tid`) of a parent in `WEB_TREE` joins it
/// with the parent's value. The tracepoint fires before `wake_up_new_task()`, so the child is
/// marked before it runs. When the child's tgid is unknown (0) nothing is marked: a thread's tid
/// in the map would outlive the thread (exit removes only group leaders' tgids) and could later
/// name an unrelated process. Userspace can still mark the child from its fork record.
#[inline(always)]
fn inherit_web_tree(parent_tgid: u32, child_tid: u32, child_tgid: u32) {
    if child_tgid == 0 || child_tgid != child_tid {
        return;
    }
    // SAFETY: a WEB_TREE value is a u32 copied out at once; any bits are valid.
    let Some(flags) = (unsafe { WEB_TREE.get(parent_tgid) }).copied() else {
        return;
    };
    if WEB_TREE.insert(child_tgid, flags, 0).is_err() {
        // Full: this process's UDP destinations go unseen unless userspace marks it.
        count_error(ErrorSlot::Fork);
    }
}

/// The tracepoint gives only the child's tid. `copy_process()` has already linked a new thread
/// at the tail of `current->signal->thread_head`, so walking that list backwards finds it at
/// once; a new process is its own group leader and is not in the list. 0 when we cannot tell
/// (offsets unknown, or more than [`MAX_THREADS`] threads to look through).
#[inline(always)]
fn child_tgid(parent_tgid: u32, child_tid: u32) -> u32 {
    if off!(threads_valid) != 1 {
        return 0;
    }
    // SAFETY: find_thread has no precondition.
    match unsafe { find_thread(child_tid) } {
        Ok(Some(true)) => parent_tgid,
        Ok(Some(false)) => child_tid,
        Ok(None) => 0,
        Err(_) => {
            count_error(ErrorSlot::Fork);
            0
        }
    }
}

/// `Some(true)` when `tid` is a thread of the current group, `Some(false)` when the whole list
/// was walked without finding it, `None` when the walk was cut short.
///
/// # Safety
/// No precondition: the task and list nodes are only read through `bpf_probe_read_kernel`.
#[inline(always)]
unsafe fn find_thread(tid: u32) -> Res<Option<bool>> {
    // SAFETY: read_ptr and read_kernel::<u32> are probe reads of values valid for any bits;
    // `wrapping_add`/`wrapping_sub` never dereference.
    unsafe {
        let signal = read_ptr(current_task(), off!(task_signal))?;
        let head = signal.wrapping_add(off!(signal_thread_head) as usize);
        let node_off = off!(task_thread_node) as usize;
        let pid_off = off!(task_pid);
        // list_head { next, prev }: `prev` is at offset 8.
        let mut node = read_ptr(head, 8)?;
        for _ in 0..MAX_THREADS {
            if node == head {
                return Ok(Some(false));
            }
            let task = node.wrapping_sub(node_off);
            if read_kernel::<u32>(task, pid_off)? == tid {
                return Ok(Some(true));
            }
            node = read_ptr(node, 8)?;
        }
        Ok(None)
    }
}

#[tracepoint]
pub fn process_sched_process_exit(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if try_process_sched_process_exit(&ctx).is_err() {
        count_error(ErrorSlot::Exit);
    }
    0
}

fn try_process_sched_process_exit(ctx: &TracePointContext) -> Res<()> {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if is_monitor(tgid) {
        return Ok(());
    }
    // Only the end of the whole thread group matters to the process table.
    let group_dead_off = off!(tp_exit_group_dead);
    let group_dead = if group_dead_off == OFFSET_ABSENT {
        pid_tgid as u32 == tgid
    } else {
        // SAFETY: read_at probe-reads a u8 of the record at the offset from the format file (a
        // wrong one fails or reads a wrong value, never faults).
        unsafe { ctx.read_at::<u8>(group_dead_off as usize)? != 0 }
    };
    if !group_dead {
        return Ok(());
    }
    // -ENOENT for every process that is not under a web server.
    let _ = WEB_TREE.remove(tgid);
    forget_fresh(tgid);
    // SAFETY: `ev` comes from RingBufEntry::as_mut_ptr and is valid for writes of one ExitEvent
    // until `emit` submits or discards it; its fields are integers, and read_kernel::<u32> is a
    // probe read.
    emit::<ExitEvent>(Wake::Later, |ev| unsafe {
        fill_header(
            &raw mut (*ev).header,
            EventKind::Exit,
            Hook::TracepointSchedProcessExit,
        );
        // do_exit() stores exit_code before firing the tracepoint.
        (*ev).exit_code = if off!(valid) == 1 {
            read_kernel::<u32>(current_task(), off!(task_exit_code)).unwrap_or(0)
        } else {
            0
        };
        (*ev)._pad0 = 0;
        Ok(())
    })
}
