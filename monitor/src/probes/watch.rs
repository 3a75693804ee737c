//! What the kernel side is told to care about at run time, so that it can drop what cannot matter
//! before it costs a ring-buffer slot: the watched executables (SSH servers, by inode), the
//! prefixes of the loaded lists, whether to send every accept, and whose UDP destinations to send
//! (the processes under a web server, the web servers' users, or everyone).

use std::{
    collections::HashSet,
    mem::MaybeUninit,
    net::{IpAddr, Ipv6Addr},
    os::fd::{AsFd as _, AsRawFd as _, RawFd},
};

use aya::maps::{
    Array, HashMap, IterableMap as _, MapData,
    lpm_trie::{Key, LpmTrie},
};
use log::{debug, warn};
use monitor_common::{
    ACCEPT_SEND_ALL, ACCEPT_SEND_WATCHED, MAP_ACCEPT_FILTER, MAP_LISTEN_PENDING, MAP_SCOPE,
    MAP_WATCHED_EXES, MAP_WATCHED_NETS, MAP_WEB_TREE, MAP_WEB_UIDS, PendingListen, SCOPE_ALERTS,
    SCOPE_ALL, Scope, SockEvent, WATCHED_EXES_MAX, WATCHED_NETS_MAX, WEB_TREE_MARKED, WEB_UIDS_MAX,
};

use super::ProbeError;

/// `BPF_NOEXIST` (include/uapi/linux/bpf.h): insert only a key that is not there.
const BPF_NOEXIST: u64 = 1;
/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`, the `bpf(2)` command.
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;

/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` on the hash map `fd` (Linux 5.14+): the value deleted,
/// atomically, so that a value the kernel put under `key` after it was read is never deleted in
/// the name of the one read. aya 0.14 offers it for queues and stacks only.
fn lookup_and_delete(fd: RawFd, key: u64) -> std::io::Result<PendingListen> {
    /// The `BPF_MAP_*_ELEM` member of `union bpf_attr`.
    #[repr(C)]
    struct ElemAttr {
        map_fd: u32,
        _pad0: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let mut value = MaybeUninit::<PendingListen>::uninit();
    let attr = ElemAttr {
        map_fd: fd.cast_unsigned(),
        _pad0: 0,
        key: std::ptr::from_ref(&key) as u64,
        value: value.as_mut_ptr() as u64,
        flags: 0,
    };
    // SAFETY: bpf(2) reads `attr` (size given) and, on success, writes one value of the map's
    // value size, which is size_of::<PendingListen>() for LISTEN_PENDING, through `value`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            std::ptr::from_ref(&attr),
            size_of::<ElemAttr>() as u32,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the call succeeded, so the kernel wrote the whole value; PendingListen is made of
    // integers and byte arrays, valid for any bits.
    Ok(unsafe { value.assume_init() })
}

/// The run-time filter maps, taken out of the loaded object.
pub struct Watch {
    /// `pid_tgid` → a listen record parked until its listen(2) returns (see
    /// [`Self::abandoned_listens`]).
    listen_pending: HashMap<MapData, u64, PendingListen>,
    exes: HashMap<MapData, u64, u32>,
    nets: LpmTrie<MapData, [u8; 16], u32>,
    accept_filter: Array<MapData, u32>,
    /// tgid → flags: processes under a web server (the kernel adds their new children and
    /// removes them when they exit, so userspace keeps no copy).
    web_tree: HashMap<MapData, u32, u32>,
    /// uid → unused: the web servers' users.
    web_uids: HashMap<MapData, u32, u32>,
    /// What the kernel sends in the current mode (see `monitor-ebpf/src/scope.rs`).
    scope: Array<MapData, Scope>,
    /// What `scope` holds.
    scope_value: Scope,
    /// Everything is wanted ([`Self::send_all`]); starts true, as the kernel does.
    send_all: bool,
    /// What `exes` holds.
    watched_exes: HashSet<u64>,
    /// What `nets` holds, as keys.
    watched_nets: HashSet<(u32, [u8; 16])>,
    /// `--events`: every accept is wanted anyway.
    send_all_accepts: bool,
    /// The lists hold more prefixes than the trie: every accept is sent instead.
    nets_overflow: bool,
}

/// What [`Watch::set_nets`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetsUpdate {
    pub added: usize,
    pub removed: usize,
    /// The prefixes now watched in the kernel.
    pub watched: usize,
    /// More prefixes than the kernel trie holds: every accept reaches userspace instead.
    pub overflow: bool,
}

impl Watch {
    pub(super) fn take(ebpf: &mut aya::Ebpf) -> Result<Self, ProbeError> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(ProbeError::MissingMap(name));
        let exes = HashMap::try_from(take(MAP_WATCHED_EXES)?)?;
        let nets = LpmTrie::try_from(take(MAP_WATCHED_NETS)?)?;
        let accept_filter = Array::try_from(take(MAP_ACCEPT_FILTER)?)?;
        let web_tree = HashMap::try_from(take(MAP_WEB_TREE)?)?;
        let web_uids = HashMap::try_from(take(MAP_WEB_UIDS)?)?;
        let scope = Array::try_from(take(MAP_SCOPE)?)?;
        let listen_pending = HashMap::try_from(take(MAP_LISTEN_PENDING)?)?;
        Ok(Self {
            listen_pending,
            exes,
            nets,
            accept_filter,
            web_tree,
            web_uids,
            scope,
            scope_value: Scope::default(),
            send_all: true,
            watched_exes: HashSet::new(),
            watched_nets: HashSet::new(),
            send_all_accepts: false,
            nets_overflow: false,
        })
    }

    /// The listen records parked in the kernel at least `min_age_ns` before `now_ns`
    /// (`CLOCK_BOOTTIME`): those no listen(2) returned for, because the listen came through
    /// `io_uring` (see `monitor-ebpf/src/listen.rs`). Each is claimed by deleting its key, as the
    /// kernel side does before it sends one, so a record goes out once. An empty map, the usual
    /// case, costs one system call.
    pub fn abandoned_listens(&mut self, now_ns: u64, min_age_ns: u64) -> Vec<SockEvent> {
        let keys: Vec<u64> = self.listen_pending.keys().filter_map(Result::ok).collect();
        let mut abandoned = Vec::new();
        for key in keys {
            let Ok(parked) = self.listen_pending.get(&key, 0) else {
                continue;
            };
            if now_ns.saturating_sub(parked.event.header.ktime_ns) < min_age_ns {
                continue;
            }
            let fd = self.listen_pending.map().fd().as_fd().as_raw_fd();
            match lookup_and_delete(fd, key) {
                // The record read above: ours to send.
                Ok(taken) if taken.event.header.ktime_ns == parked.event.header.ktime_ns => {
                    abandoned.push(taken.event);
                }
                // Between the read and the delete the thread sent that record itself and parked
                // a new one, whose listen(2) may still be running: it goes back (and is sent
                // here if something else took its place meanwhile, rather than lost).
                Ok(taken) => {
                    if self.listen_pending.insert(key, taken, BPF_NOEXIST).is_err() {
                        abandoned.push(taken.event);
                    }
                }
                // Sent by the kernel meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                // Kernels before 5.14 cannot look up and delete a hash element at once.
                Err(_) => {
                    if self.listen_pending.remove(&key).is_ok() {
                        abandoned.push(parked.event);
                    }
                }
            }
        }
        abandoned
    }

    /// Parks `record` for thread `key` as the kernel side would.
    #[cfg(test)]
    pub(super) fn park_listen(
        &mut self,
        key: u64,
        record: PendingListen,
    ) -> Result<(), ProbeError> {
        self.listen_pending.insert(key, record, 0)?;
        Ok(())
    }

    /// Sends every accepted connection to userspace (`--events`), or only the watched ones.
    pub fn send_all_accepts(&mut self, all: bool) -> Result<(), ProbeError> {
        self.send_all_accepts = all;
        self.apply_accept_filter()
    }

    fn apply_accept_filter(&mut self) -> Result<(), ProbeError> {
        let value = if self.send_all_accepts || self.nets_overflow {
            ACCEPT_SEND_ALL
        } else {
            ACCEPT_SEND_WATCHED
        };
        self.accept_filter.set(0, value, 0)?;
        Ok(())
    }

    /// Sends everything (`--events`; also what the kernel does until this is called), or only
    /// what can raise an alert: connects and UDP destinations of the processes under a web server
    /// ([`Self::mark_web_tree`]), of the web servers' users ([`Self::set_web_uids`]) and of
    /// processes too new to be judged ([`Self::judged_up_to`]), connects to watched networks, and
    /// listens (loopback ones only when [`Self::skip_loopback_listens`] is off).
    pub fn send_all(&mut self, all: bool) -> Result<(), ProbeError> {
        self.send_all = all;
        self.apply_scope()
    }

    /// Whether a listen on a loopback address can be left in the kernel in the default mode (the
    /// policy allows every one).
    pub fn skip_loopback_listens(&mut self, skip: bool) -> Result<(), ProbeError> {
        self.scope_value.skip_loopback_listens = u32::from(skip);
        self.apply_scope()
    }

    /// Tells the kernel that every exec and fork record up to `CLOCK_BOOTTIME` `ns` has been
    /// handled (the processes they made are marked if they are under a web server).
    pub fn judged_up_to(&mut self, ns: u64) -> Result<(), ProbeError> {
        if ns <= self.scope_value.judged_ns {
            return Ok(());
        }
        self.scope_value.judged_ns = ns;
        self.apply_scope()
    }

    /// What the kernel's scope is.
    pub fn scope(&self) -> Scope {
        self.scope_value
    }

    fn apply_scope(&mut self) -> Result<(), ProbeError> {
        // Lists too large for the trie cannot be told apart in the kernel: everything goes to
        // userspace then (the records no rule can alert on without a wake-up).
        self.scope_value.mode = if self.send_all || self.nets_overflow {
            SCOPE_ALL
        } else {
            SCOPE_ALERTS
        };
        self.scope.set(0, self.scope_value, 0)?;
        Ok(())
    }

    /// Marks the process `tgid` as under a web server (idempotent): the kernel then reports its
    /// UDP destinations, marks its new child processes too, and unmarks each when it exits. A
    /// tgid that is gone already stays marked until the pid is reused and that process exits; the
    /// map's capacity bounds the leak (a full map refuses the mark: [`ProbeError::Map`]).
    pub fn mark_web_tree(&mut self, tgid: u32) -> Result<(), ProbeError> {
        self.web_tree.insert(tgid, WEB_TREE_MARKED, 0)?;
        Ok(())
    }

    /// Whether the kernel holds `tgid` as under a web server.
    #[cfg(test)]
    pub(super) fn in_web_tree(&self, tgid: u32) -> bool {
        self.web_tree.get(&tgid, 0).is_ok()
    }

    /// Makes the kernel treat exactly `uids` as web servers' users, whose processes' UDP
    /// destinations it reports. Stale uids are removed before new ones are inserted (the map
    /// holds [`WEB_UIDS_MAX`]); a uid in both the old and the new set is never removed. More
    /// than [`WEB_UIDS_MAX`] uids changes nothing and is [`ProbeError::TooManyWebUids`].
    pub fn set_web_uids(&mut self, uids: &[u32]) -> Result<(), ProbeError> {
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        if wanted.len() > WEB_UIDS_MAX as usize {
            return Err(ProbeError::TooManyWebUids {
                count: wanted.len(),
                max: WEB_UIDS_MAX,
            });
        }
        let held: HashSet<u32> = self.web_uids.keys().collect::<Result<_, _>>()?;
        for uid in held.difference(&wanted) {
            self.web_uids.remove(uid)?;
        }
        for &uid in wanted.difference(&held) {
            self.web_uids.insert(uid, 1, 0)?;
        }
        debug!("web servers' users: {wanted:?}");
        Ok(())
    }

    /// Watches the executable with inode `ino` with `flags` (idempotent). Returns whether it is
    /// new. Never unwatches: a process may run a replaced binary for months.
    pub fn watch_exe(&mut self, ino: u64, flags: u32) -> Result<bool, ProbeError> {
        if self.watched_exes.contains(&ino) {
            return Ok(false);
        }
        if self.watched_exes.len() >= WATCHED_EXES_MAX as usize {
            warn!("more than {WATCHED_EXES_MAX} watched executables: inode {ino} is not watched");
            return Ok(false);
        }
        self.exes.insert(ino, flags, 0)?;
        self.watched_exes.insert(ino);
        debug!("watching the executable with inode {ino}");
        Ok(true)
    }

    /// Makes the kernel watch exactly `prefixes` (new ones inserted before stale ones are
    /// removed, so an address watched before and after is never unwatched in between). More
    /// than the trie holds switches the accept filter to send everything.
    pub fn set_nets(
        &mut self,
        prefixes: impl Iterator<Item = (IpAddr, u8)>,
    ) -> Result<NetsUpdate, ProbeError> {
        let wanted: HashSet<(u32, [u8; 16])> = prefixes.map(|(ip, len)| key_of(ip, len)).collect();
        let overflow = wanted.len() > WATCHED_NETS_MAX as usize;
        let mut update = NetsUpdate {
            overflow,
            ..NetsUpdate::default()
        };
        if overflow {
            warn!(
                "the lists hold {} prefixes, more than the kernel's {WATCHED_NETS_MAX}: every \
                 accepted connection is sent to userspace instead",
                wanted.len()
            );
        } else {
            for &(len, data) in wanted.difference(&self.watched_nets) {
                self.nets.insert(&Key::new(len, data), 1, 0)?;
                update.added += 1;
            }
        }
        let stale: Vec<(u32, [u8; 16])> = if overflow {
            self.watched_nets.iter().copied().collect()
        } else {
            self.watched_nets.difference(&wanted).copied().collect()
        };
        for (len, data) in stale {
            self.nets.remove(&Key::new(len, data))?;
            update.removed += 1;
        }
        self.watched_nets = if overflow { HashSet::new() } else { wanted };
        update.watched = self.watched_nets.len();
        self.nets_overflow = overflow;
        self.apply_accept_filter()?;
        self.scope_value.watched_nets = u32::from(!self.watched_nets.is_empty());
        self.apply_scope()?;
        Ok(update)
    }
}

/// The trie's key for a prefix: IPv6 as is, IPv4 as `::ffff:a.b.c.d` with 96 more bits.
fn key_of(ip: IpAddr, len: u8) -> (u32, [u8; 16]) {
    match ip {
        IpAddr::V4(v4) => (96 + u32::from(len.min(32)), v4.to_ipv6_mapped().octets()),
        IpAddr::V6(v6) => (u32::from(len.min(128)), masked(v6, len)),
    }
}

fn masked(v6: Ipv6Addr, len: u8) -> [u8; 16] {
    let bits = u128::from(v6);
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    };
    (bits & mask).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_prefixes_are_keyed_as_mapped_addresses() {
        let (len, data) = key_of("10.77.1.0".parse().unwrap(), 24);
        assert_eq!(len, 120);
        assert_eq!(
            Ipv6Addr::from(data),
            "::ffff:10.77.1.0".parse::<Ipv6Addr>().unwrap()
        );
        let (len, data) = key_of("fd77::1:2".parse().unwrap(), 64);
        assert_eq!(len, 64);
        assert_eq!(Ipv6Addr::from(data), "fd77::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(key_of("::".parse().unwrap(), 0), (0, [0; 16]));
    }
}
