//! What the kernel side is told to care about at run time, so that it can drop what cannot matter
//! before it costs a ring-buffer slot: the watched executables (SSH servers, by inode), the
//! prefixes of the loaded lists, and whether to send every accept.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv6Addr},
};

use aya::maps::{
    Array, HashMap, MapData,
    lpm_trie::{Key, LpmTrie},
};
use log::{debug, warn};
use monitor_common::{
    ACCEPT_SEND_ALL, ACCEPT_SEND_WATCHED, MAP_ACCEPT_FILTER, MAP_WATCHED_EXES, MAP_WATCHED_NETS,
    WATCHED_EXES_MAX, WATCHED_NETS_MAX,
};

use super::ProbeError;

/// The run-time filter maps, taken out of the loaded object.
pub struct Watch {
    exes: HashMap<MapData, u64, u32>,
    nets: LpmTrie<MapData, [u8; 16], u32>,
    accept_filter: Array<MapData, u32>,
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
        Ok(Self {
            exes,
            nets,
            accept_filter,
            watched_exes: HashSet::new(),
            watched_nets: HashSet::new(),
            send_all_accepts: false,
            nets_overflow: false,
        })
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
