//! Loading and attaching the eBPF programs. INTERFACE STUB written by the lead: the kernel-side
//! helper owns this file and fills it in, keeping these signatures (the daemon calls them).

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("eBPF support is not implemented yet")]
    NotImplemented,
}

/// Options fixed at load time.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Size of the ring buffer in bytes (power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Thread-group id the kernel side ignores (the daemon's own).
    pub monitor_tgid: u32,
}

/// One attach attempt that did not take.
#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    /// e.g. `fentry:inet_listen`.
    pub hook: String,
    pub error: String,
}

/// Outcome for one logical hook (`listen`, `connect`, `exec`, `fork`, `exit`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct HookStatus {
    /// The hook that took, e.g. `tracepoint:sock:inet_sock_set_state`; `null` when none did.
    pub attached: Option<String>,
    pub refused: Vec<Refusal>,
}

/// Keyed by logical hook name; serialized as the `hooks` object of the status record.
pub type AttachReport = BTreeMap<String, HookStatus>;

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counters {
    /// Events lost because the ring buffer was full.
    pub drops: u64,
    /// Failures inside the eBPF programs, by `monitor_common::ErrorSlot`.
    pub errors: [u64; monitor_common::ERROR_SLOTS as usize],
}

/// The loaded and attached programs. Dropping it detaches everything.
pub struct Probes {}

impl Probes {
    /// Loads the embedded object, sets globals, attaches every hook (preferred first, then
    /// fallback). Fails only when a hook has no working attachment at all.
    pub fn load(_opts: &ProbeOptions) -> Result<Self, ProbeError> {
        Err(ProbeError::NotImplemented)
    }

    /// Which hook took for each logical hook and why the others did not.
    pub fn report(&self) -> &AttachReport {
        unimplemented!()
    }

    /// Takes the ring buffer (call once); the daemon wraps it in `tokio::io::unix::AsyncFd`.
    pub fn take_ring_buf(&mut self) -> Result<aya::maps::RingBuf<aya::maps::MapData>, ProbeError> {
        Err(ProbeError::NotImplemented)
    }

    /// Current per-CPU drop and error counters, summed.
    pub fn counters(&self) -> Result<Counters, ProbeError> {
        Err(ProbeError::NotImplemented)
    }
}
