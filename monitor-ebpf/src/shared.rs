//! Helpers every program uses: the record header, counters, globals and offset-based reads of
//! kernel memory (our stand-in for CO-RE, which aya-ebpf lacks for Rust).

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_current_cgroup_id, bpf_get_current_task, bpf_ktime_get_boot_ns},
    },
    macros::map,
    maps::Array,
};
use monitor_common::{EUID_UNKNOWN, ErrorSlot, EventHeader, EventKind, Hook};

use crate::{DROPS, ERRORS, EVENTS, FLOOR, MONITOR_TGID, WATCHED_EXES, scope::Wake};

/// Errors are the negative errno values the helpers return.
pub type Res<T> = Result<T, i32>;

/// Error returned when a kernel pointer we must follow is NULL (`-EFAULT`).
pub const EFAULT: i32 = -14;

/// Reads one field of the [`monitor_common::KernelOffsets`] global. Volatile so that the compiler does not fold
/// the default value in: the loader rewrites `.rodata` before load.
macro_rules! off {
    ($field:ident) => {
        $crate::shared::read_global(&raw const $crate::KERNEL_OFFSETS.$field)
    };
}
pub(crate) use off;

/// Volatile read of a `u32` global (see [`off!`]).
#[inline(always)]
pub fn read_global(p: *const u32) -> u32 {
    // SAFETY: `p` points into a static of this object, which lives as long as the program.
    unsafe { core::ptr::read_volatile(p) }
}

#[inline(always)]
pub fn offsets_valid() -> bool {
    off!(valid) == 1
}

/// `true` in the benchmark's kernel floor: the program returns before doing anything.
#[inline(always)]
pub fn floor() -> bool {
    read_global(&raw const FLOOR) != 0
}

/// `true` when the current task belongs to the daemon itself.
#[inline(always)]
pub fn is_monitor(tgid: u32) -> bool {
    tgid == read_global(&raw const MONITOR_TGID)
}

#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

#[inline(always)]
pub fn count_error(slot: ErrorSlot) {
    if let Some(p) = ERRORS.get_ptr_mut(slot as u32) {
        // SAFETY: `p` is this CPU's u64 in ERRORS (non-NULL, checked by the verifier), valid for the
        // whole run of the program; map values are 8-byte aligned.
        unsafe { bump(p) };
    }
}

#[inline(always)]
pub fn count_drop() {
    if let Some(p) = DROPS.get_ptr_mut(0) {
        // SAFETY: as in `count_error`, this CPU's aligned u64 in DROPS.
        unsafe { bump(p) };
    }
}

/// Adds 1 to a per-CPU counter. Per-CPU is not enough for a plain `+= 1`: a softirq program
/// (a socket leaving `SYN_SENT`) can interrupt a syscall program on the same CPU between its load
/// and its store, and one increment would be lost. The atomic add (`lock *(u64 *)(r + 0) += r`,
/// without fetch since the result is unused) is one instruction that every eBPF kernel accepts.
/// `AtomicU64::fetch_add` is not offered on the bpf target (it declares only atomic loads and
/// stores), hence the intrinsic, which LLVM lowers to that instruction.
///
/// # Safety
/// `p` must point to a live, 8-byte aligned map value.
#[inline(always)]
unsafe fn bump(p: *mut u64) {
    // SAFETY: the caller's contract, passed on.
    unsafe { add(p, 1) };
}

/// `*p += n` as one atomic instruction (wrapping: `u64::MAX` subtracts one), see [`bump`].
///
/// # Safety
/// As for [`bump`].
#[inline(always)]
unsafe fn add(p: *mut u64, n: u64) {
    // SAFETY: the caller guarantees a valid, aligned u64 that lives as long as the map.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            p, n,
        )
    };
}

/// Reserves a `T` in the ring buffer, lets `fill` write it in place (records are too big for the
/// stack), and submits it. A full ring buffer bumps DROPS (loss is data, never silent); a failed
/// `fill` discards the record and returns its error for the caller's error slot. `wake` says
/// whether the daemon must see it at once ([`Wake`]).
#[inline(always)]
pub fn emit<T: 'static>(wake: Wake, fill: impl FnOnce(*mut T) -> Res<()>) -> Res<()> {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        count_drop();
        return Ok(());
    };
    match fill(entry.as_mut_ptr()) {
        Ok(()) => {
            entry.submit(wake.flags());
            Ok(())
        }
        Err(e) => {
            entry.discard(0);
            Err(e)
        }
    }
}

/// Reads a `T` at `base + offset` from kernel memory; NULL `base` is an error, not a fault.
///
/// # Safety
/// Every bit pattern must be a valid `T` (integers, raw pointers, arrays of them): the bytes are
/// whatever the kernel memory holds. `base` may be any address: a bad one fails the read.
#[inline(always)]
pub unsafe fn read_kernel<T>(base: *const u8, offset: u32) -> Res<T> {
    if base.is_null() {
        return Err(EFAULT);
    }
    // SAFETY: bpf_probe_read_kernel copies at most size_of::<T>() bytes and returns an error
    // instead of faulting on a bad address (`wrapping_add` never dereferences); the caller
    // guarantees that any bytes are a valid `T`.
    unsafe {
        aya_ebpf::helpers::bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>())
    }
}

/// Like [`read_kernel`] for a pointer field, failing on NULL so callers can chain reads.
///
/// # Safety
/// No precondition: any bits are a valid raw pointer and `base` may be any address (see
/// [`read_kernel`]). `unsafe` only marks a read of kernel memory at the call site.
#[inline(always)]
pub unsafe fn read_ptr(base: *const u8, offset: u32) -> Res<*const u8> {
    // SAFETY: a raw pointer is valid for any bits, which is all read_kernel asks.
    let p: *const u8 = unsafe { read_kernel(base, offset)? };
    if p.is_null() { Err(EFAULT) } else { Ok(p) }
}

#[inline(always)]
pub fn current_task() -> *const u8 {
    // SAFETY: bpf_get_current_task takes no arguments and has no preconditions; the address it
    // returns is only ever read through bpf_probe_read_kernel.
    unsafe { bpf_get_current_task() as *const u8 }
}

/// `current->real_parent->tgid`, 0 when the offsets are unknown or the read fails.
#[inline(always)]
pub fn current_ppid() -> u32 {
    if !offsets_valid() {
        return 0;
    }
    let task = current_task();
    // SAFETY: both are probe reads (a bad address fails, never faults) of a pointer and a u32,
    // valid for any bits.
    unsafe {
        match read_ptr(task, off!(task_real_parent)) {
            Ok(parent) => read_kernel::<u32>(parent, off!(task_tgid)).unwrap_or(0),
            Err(_) => 0,
        }
    }
}

/// Whether records of `kind` carry the effective uid: what a process does with its privileges
/// (the program it runs, its sockets) and its uid changes. Fork, exit, PAM and setsid records,
/// fork and exit being on every program start, skip the two reads.
#[inline(always)]
fn carries_euid(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Exec
            | EventKind::Listen
            | EventKind::Connect
            | EventKind::Accept
            | EventKind::Cred
    )
}

/// `current->cred->euid`, [`EUID_UNKNOWN`] when the offsets are unknown or a read fails.
#[inline(always)]
pub fn current_euid() -> u32 {
    if off!(cred_valid) != 1 {
        return EUID_UNKNOWN;
    }
    // SAFETY: both are probe reads (a bad address fails, never faults) of a pointer and a u32,
    // valid for any bits.
    unsafe {
        match read_ptr(current_task(), off!(task_cred)) {
            Ok(cred) => read_kernel::<u32>(cred, off!(cred_euid)).unwrap_or(EUID_UNKNOWN),
            Err(_) => EUID_UNKNOWN,
        }
    }
}

/// Fills every field of the header (ring-buffer memory is not zeroed by the kernel).
///
/// # Safety
/// `h` must be valid for writes of one `EventHeader` (a ring-buffer reservation, a map value or a
/// local); it may be uninitialized.
#[inline(always)]
pub unsafe fn fill_header(h: *mut EventHeader, kind: EventKind, hook: Hook) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: `h` is valid for writes (the caller's contract), and every field is an integer or a
    // byte array, so assigning one drops nothing; the helpers called here take no pointers.
    unsafe {
        (*h).kind = kind as u32;
        (*h).hook = hook as u32;
        (*h).ktime_ns = bpf_ktime_get_boot_ns();
        (*h).tid = pid_tgid as u32;
        (*h).tgid = (pid_tgid >> 32) as u32;
        (*h).ppid = current_ppid();
        (*h).uid = uid_gid as u32;
        (*h).gid = (uid_gid >> 32) as u32;
        (*h).euid = if carries_euid(kind) {
            current_euid()
        } else {
            EUID_UNKNOWN
        };
        (*h).cgroup_id = bpf_get_current_cgroup_id();
        (*h).comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
}

/// The flags userspace gave the current process's executable in `WATCHED_EXES` (0 when it is
/// not watched, or when the offsets to tell are unknown), by the inode number of
/// `current->mm->exe_file->f_inode`.
#[inline(always)]
pub fn current_exe_flags() -> u32 {
    if !offsets_valid() || off!(files_valid) != 1 {
        return 0;
    }
    // SAFETY: read_ptr and read_kernel have no precondition: every address is only read through
    // bpf_probe_read_kernel, and the values read are pointers and integers.
    let ino = unsafe {
        let Ok(mm) = read_ptr(current_task(), off!(task_mm)) else {
            return 0;
        };
        let Ok(file) = read_ptr(mm, off!(mm_exe_file)) else {
            return 0;
        };
        let Ok(inode) = read_ptr(file, off!(file_f_inode)) else {
            return 0;
        };
        let Ok(ino) = read_kernel::<u64>(inode, off!(inode_i_ino)) else {
            return 0;
        };
        ino
    };
    // SAFETY: a WATCHED_EXES value is a u32 the kernel keeps valid for this run of the program.
    unsafe { WATCHED_EXES.get(ino) }.copied().unwrap_or(0)
}

/// Which pending map a [`parked`] counter counts.
#[derive(Clone, Copy)]
pub enum Parked {
    Listen = 0,
    Bind = 1,
    Connect = 2,
    UdpConnect = 3,
}

/// Per pending map (`LISTEN_PENDING`, `BIND_PENDING`, `CONNECT_PENDING`, `UDP_CONNECT_PENDING`):
/// records parked by the kernel side minus those it removed. At least the number of entries
/// (the daemon's sweep removes without counting), so 0 means the map is empty and a
/// `sys_exit_*` program can skip its hash lookup: a thread's own park, which it would look for,
/// is counted before its syscall returns. The common case by far, since the default mode parks
/// only what can raise an alert.
#[map(name = "PARKED")]
static PARKED: Array<u64> = Array::with_max_entries(4, 0);

/// Adds `n` (wrapping: `-1` as `u64::MAX`) to the counter of `map`, atomically.
#[inline(always)]
fn parked_add(map: Parked, n: u64) {
    if let Some(p) = PARKED.get_ptr_mut(map as u32) {
        // SAFETY: `p` is a PARKED value (non-NULL checked): an aligned u64 that lives as long as
        // the map.
        unsafe { add(p, n) };
    }
}

/// A record was parked in `map`.
#[inline(always)]
pub fn parked_one(map: Parked) {
    parked_add(map, 1);
}

/// The kernel side removed a parked record from `map` (its delete returned 0).
#[inline(always)]
pub fn unparked_one(map: Parked) {
    parked_add(map, u64::MAX);
}

/// Whether `map` certainly holds no record.
#[inline(always)]
pub fn none_parked(map: Parked) -> bool {
    match PARKED.get_ptr(map as u32) {
        Some(p) => {
            // SAFETY: as in parked_add; a volatile load, so that it is made here and not merged.
            let n: u64 = unsafe { core::ptr::read_volatile(p) };
            n == 0
        }
        None => false,
    }
}
