//! The monitor's eBPF programs: one file per area (`listen`, `connect`, `exec`, `process` for
//! fork/exit, `udp` for UDP destinations, `bind` for open UDP ports, ...), sharing the maps and globals declared here and
//! the helpers in [`shared`] and [`path`]. Every program is a thin hook that calls a `try_<name>` returning `Result`; a failure
//! is counted in [`ERRORS`] (slot by area) and a full ring buffer in [`DROPS`], so nothing is lost
//! silently.
#![no_std]
#![no_main]
// For `core::intrinsics::atomic_xadd`: the bpf target has no `AtomicU64::fetch_add` (see
// `shared::bump`).
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "atomic add on the bpf target, see shared::bump"
)]

mod accept;
mod bind;
mod connect;
mod cred;
mod exec;
mod listen;
mod pam;
mod path;
mod process;
mod scope;
mod shared;
mod sock;
mod udp;

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use monitor_common::{
    DEFAULT_RING_BUFFER_BYTES, ERROR_SLOTS, KernelOffsets, WATCHED_EXES_MAX, WEB_TREE_MAX,
};

/// Every event goes through this one ring buffer; the loader resizes it with
/// `EbpfLoader::set_max_entries` before load.
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BUFFER_BYTES, 0);

/// Index 0: records lost because `bpf_ringbuf_reserve` failed (ring buffer full).
#[map(name = "DROPS")]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Failures inside the programs, indexed by `monitor_common::ErrorSlot`.
#[map(name = "ERRORS")]
static ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ERROR_SLOTS, 0);

/// Executables userspace watches (sshd and its session binaries), by inode number → flags. The
/// accept and PAM hooks report for these even when nothing else asks for it.
#[map(name = "WATCHED_EXES")]
static WATCHED_EXES: HashMap<u64, u32> = HashMap::with_max_entries(WATCHED_EXES_MAX, 0);

/// Processes under a web server, by tgid → flags: userspace marks them, fork hands the mark down
/// to new processes, exit removes it. The UDP hooks report for these.
#[map(name = "WEB_TREE")]
static WEB_TREE: HashMap<u32, u32> = HashMap::with_max_entries(WEB_TREE_MAX, 0);

/// The daemon's own thread-group id (set by the loader): its events are never reported, so the
/// monitor cannot feed on itself.
// SAFETY: no other symbol of the object has this name; the loader finds the global by it.
#[unsafe(no_mangle)]
static MONITOR_TGID: u32 = 0;

/// `1`: every program returns at once (the benchmark's kernel floor), set by the loader.
// SAFETY: as for MONITOR_TGID, a name no other symbol has.
#[unsafe(no_mangle)]
static FLOOR: u32 = 0;

/// Kernel struct offsets from BTF (set by the loader; `valid == 0` means "do not dereference").
// SAFETY: as for MONITOR_TGID, a name no other symbol has.
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets::UNKNOWN;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// SAFETY: the `license` section holds only this NUL-terminated string, the form the kernel reads
// at load; no other symbol is named LICENSE.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
