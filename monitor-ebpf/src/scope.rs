//! Scope: what can matter in the current mode, decided here so that what cannot never costs a
//! ring-buffer slot or a wake-up of the daemon.
//!
//! In the default mode (`SCOPE_ALERTS`) a connect or a UDP destination can raise an alert only
//! for a process under a web server (`WEB_TREE`), running as a web server's user (`WEB_UIDS`), or
//! to a watched network (`WATCHED_NETS`). A process becomes a web server (or a web server's
//! child) at its exec or fork, and userspace marks it when it handles that record, a little
//! later: until then the process is *fresh* (`FRESH` holds its exec or fork time, newer than
//! `Scope::judged_ns`) and what it does is sent too, so the window between the kernel's record
//! and userspace's mark loses nothing.
//!
//! Wake-ups: a record that can raise an alert wakes the daemon at once: a listen, an SSH server's
//! accept, credential and PAM results, and the execs, connects and UDP destinations of marked
//! processes or to watched networks. The rest (fork, exit, other execs, what fresh processes do,
//! `--events` records no rule can alert on) are submitted without a wake-up and read at the next
//! wake-up or at the daemon's flush tick (10 ms), unless the ring buffer is an eighth full, which
//! wakes it. The kernel's adaptive wake-up (flag 0) wakes the reader only when
//! the record is the first one it has not read, so behind an unwoken record it would not: an
//! alerting record is forced (`BPF_RB_FORCE_WAKEUP`) when unwoken records may still be unread
//! (the consumer position is before the end of the last one, `NOWAKE`), and adaptive otherwise.
//! A forced wake-up costs an inter-processor interrupt (microseconds in a VM), which is why it
//! is not used for every record.

use aya_ebpf::{
    helpers::{bpf_get_current_uid_gid, generated::bpf_ktime_get_boot_ns},
    macros::map,
    maps::{Array, LruHashMap},
};
use monitor_common::{FRESH_MAX, SCOPE_ALL, Scope};

use crate::{EVENTS, WEB_TREE, udp::WEB_UIDS};

#[map(name = "SCOPE")]
static SCOPE: Array<Scope> = Array::with_max_entries(1, 0);

#[map(name = "FRESH")]
static FRESH: LruHashMap<u32, u64> = LruHashMap::with_max_entries(FRESH_MAX, 0);

/// `BPF_RB_NO_WAKEUP`, `BPF_RB_FORCE_WAKEUP` (submit flags) and `BPF_RB_AVAIL_DATA`,
/// `BPF_RB_RING_SIZE` (query flags), from `include/uapi/linux/bpf.h`.
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;
const BPF_RB_CONS_POS: u64 = 2;
const BPF_RB_PROD_POS: u64 = 3;

/// Index 0: the ring buffer's producer position after the last record submitted without a
/// wake-up. A racy store from several CPUs: a lost update can delay one alerting record until
/// the next wake-up or flush tick, never lose it.
#[map(name = "NOWAKE")]
static NOWAKE: Array<u64> = Array::with_max_entries(1, 0);

/// Whether the daemon must see a record now.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// It can raise an alert.
    Now,
    /// It cannot: it waits for the next wake-up or flush tick.
    Later,
}

impl Wake {
    #[inline(always)]
    pub fn when(alertable: bool) -> Self {
        if alertable { Wake::Now } else { Wake::Later }
    }

    /// The submit flags, for a record reserved and about to be submitted.
    #[inline(always)]
    pub fn flags(self) -> u64 {
        let Some(nowake) = NOWAKE.get_ptr_mut(0) else {
            return 0;
        };
        match self {
            Wake::Now => {
                // SAFETY: `nowake` is NOWAKE's only value (non-NULL checked), an aligned u64.
                if EVENTS.query(BPF_RB_CONS_POS) < unsafe { *nowake } {
                    BPF_RB_FORCE_WAKEUP
                } else {
                    0
                }
            }
            Wake::Later => {
                let size = EVENTS.query(BPF_RB_RING_SIZE);
                if EVENTS.query(BPF_RB_AVAIL_DATA) > size / 8 {
                    BPF_RB_FORCE_WAKEUP
                } else {
                    // SAFETY: as above.
                    unsafe { *nowake = EVENTS.query(BPF_RB_PROD_POS) };
                    BPF_RB_NO_WAKEUP
                }
            }
        }
    }
}

/// The current scope (all zero, send everything, until userspace sets it).
#[inline(always)]
pub fn scope() -> Scope {
    SCOPE.get(0).copied().unwrap_or_default()
}

/// Whether everything is sent (`--events`, or start-up not done).
#[inline(always)]
pub fn send_all(scope: &Scope) -> bool {
    scope.mode == SCOPE_ALL
}

/// Whether process `tgid` running as real uid `uid` is known to be under a web server or to run
/// as a web server's user (marked by userspace, or handed down at fork).
#[inline(always)]
pub fn marked(tgid: u32, uid: u32) -> bool {
    WEB_TREE.get_ptr(tgid).is_some() || WEB_UIDS.get_ptr(uid).is_some()
}

/// [`marked`] for the current task.
#[inline(always)]
pub fn current_marked(tgid: u32) -> bool {
    marked(tgid, bpf_get_current_uid_gid() as u32)
}

/// Whether process `tgid` is too new for userspace to have judged it: its last exec or its fork
/// is newer than [`Scope::judged_ns`]. It may be under a web server that userspace has not
/// marked yet, so what it does is sent (without a wake-up: it is read at the next flush tick).
#[inline(always)]
pub fn fresh(tgid: u32, scope: &Scope) -> bool {
    // SAFETY: a FRESH value is a u64 copied out at once; any bits are valid.
    match unsafe { FRESH.get(tgid) } {
        Some(&at) => at > scope.judged_ns,
        None => false,
    }
}

/// How soon userspace must see what the current process `tgid` does that only a process under
/// a web server could be alerted on: at once when it is [`marked`], at the next flush tick when
/// it is [`fresh`] or everything is sent, not at all otherwise.
#[inline(always)]
pub fn current_wake(tgid: u32, scope: &Scope) -> Option<Wake> {
    if current_marked(tgid) {
        Some(Wake::Now)
    } else if send_all(scope) || fresh(tgid, scope) {
        Some(Wake::Later)
    } else {
        None
    }
}

/// Records that process `tgid` exec'd or was forked just now.
#[inline(always)]
pub fn mark_fresh(tgid: u32) {
    // SAFETY: bpf_ktime_get_boot_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // An LRU insert fails only on an allocation failure: the process is then judged by WEB_TREE
    // alone, as before this map existed.
    let _ = FRESH.insert(tgid, now, 0);
}

/// Forgets process `tgid` (it exited).
#[inline(always)]
pub fn forget_fresh(tgid: u32) {
    let _ = FRESH.remove(tgid);
}
