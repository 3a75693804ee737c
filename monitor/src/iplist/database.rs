//! The longest-prefix database: [`EnrichmentBuilder`] gathers the sources, [`Enrichment`]
//! answers lookups.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    net::{IpAddr, Ipv4Addr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::joint::JointPrefixMap;

use super::parse::{Reputation, ReputationEntry};
use crate::netrange::Cidr;

/// Everything the database knows about one prefix. Interned: prefixes that share the same facts
/// share one record, so the trie holds a `u32` per prefix and a million-entry list adds a
/// handful of records, not a million.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Membership {
    tor_exit: bool,
    trusted: bool,
    /// This prefix itself is alert-worthy (not merely inside one): exported for the kernel.
    watched: bool,
    /// Index into `reputations`.
    reputation: Option<u32>,
    /// Indices into `names`, ascending, which is configuration order.
    lists: Box<[u32]>,
}

/// One fact a source states about a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fact {
    TorExit,
    Trusted,
    List(u32),
    Reputation(u32),
}

#[derive(Debug)]
struct Interner<T> {
    items: Vec<T>,
    ids: HashMap<T, u32>,
}

impl<T: Clone + Eq + Hash> Interner<T> {
    fn new() -> Self {
        Self {
            items: Vec::new(),
            ids: HashMap::new(),
        }
    }

    /// `None` only past `u32::MAX` distinct items, which no list that fits in memory reaches.
    fn intern(&mut self, item: T) -> Option<u32> {
        if let Some(id) = self.ids.get(&item) {
            return Some(*id);
        }
        let id = u32::try_from(self.items.len()).ok()?;
        self.items.push(item.clone());
        self.ids.insert(item, id);
        Some(id)
    }

    fn get(&self, id: u32) -> Option<&T> {
        get(&self.items, id)
    }
}

/// Gathers sources, then [`build`](Self::build)s the immutable [`Enrichment`].
///
/// `build` stores in each prefix its own facts *and* those of every prefix enclosing it, so a
/// lookup needs only the longest match: the prefixes that contain an address all lie on one
/// chain, and the longest holds them all. To make that one pass, prefixes are inserted shortest
/// first; when a prefix goes in, its closest enclosing prefix is already final and is simply its
/// longest match.
#[derive(Debug)]
pub struct EnrichmentBuilder {
    pending: Vec<(IpNet, Fact)>,
    reputations: Interner<Reputation>,
    names: Vec<String>,
    skipped: usize,
}

impl Default for EnrichmentBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl EnrichmentBuilder {
    #[must_use]
    pub fn new() -> Self {
        Self {
            pending: Vec::new(),
            reputations: Interner::new(),
            names: Vec::new(),
            skipped: 0,
        }
    }

    pub fn tor_exits(&mut self, exits: &[Cidr]) -> &mut Self {
        self.add(exits, Fact::TorExit);
        self
    }

    pub fn reputation(&mut self, entries: &[ReputationEntry]) -> &mut Self {
        self.pending.reserve(entries.len());
        for entry in entries {
            match self.reputations.intern(entry.reputation.clone()) {
                Some(id) => self
                    .pending
                    .push((to_ipnet(entry.network), Fact::Reputation(id))),
                None => self.skipped = self.skipped.saturating_add(1),
            }
        }
        self
    }

    /// Lists are reported in the order they are added; names should be unique ([`IpLists`](super::IpLists)
    /// checks that for configured lists).
    pub fn list(&mut self, name: &str, entries: &[Cidr]) -> &mut Self {
        let Ok(id) = u32::try_from(self.names.len()) else {
            self.skipped = self.skipped.saturating_add(entries.len());
            return self;
        };
        self.names.push(name.to_owned());
        self.add(entries, Fact::List(id));
        self
    }

    pub fn trusted(&mut self, networks: &[Cidr]) -> &mut Self {
        self.add(networks, Fact::Trusted);
        self
    }

    fn add(&mut self, networks: &[Cidr], fact: Fact) {
        self.pending
            .extend(networks.iter().map(|cidr| (to_ipnet(*cidr), fact)));
    }

    #[must_use]
    pub fn build(self) -> Enrichment {
        let Self {
            mut pending,
            reputations,
            names,
            mut skipped,
        } = self;
        // Shortest first within each family. Stable, so that equal verdicts on one prefix keep
        // file order and the first of them wins.
        pending.sort_by_key(|(net, _)| (net.addr().is_ipv6(), net.prefix_len(), net.addr()));
        let mut map = JointPrefixMap::new();
        let mut memberships = Interner::new();
        let mut watched = WatchedCounts::default();
        for group in pending.chunk_by(|a, b| a.0 == b.0) {
            let Some(&(net, _)) = group.first() else {
                continue;
            };
            let mut own = Membership::default();
            for (_, fact) in group {
                apply(&mut own, *fact, &reputations.items);
            }
            let parent = map.get_lpm(&net).and_then(|(_, id)| memberships.get(*id));
            let folded = fold(parent, own, &reputations.items);
            let is_watched = folded.watched;
            let Some(id) = memberships.intern(folded) else {
                skipped = skipped.saturating_add(1);
                continue;
            };
            map.insert(net, id);
            match net {
                IpNet::V4(_) if is_watched => watched.v4 += 1,
                IpNet::V6(_) if is_watched => watched.v6 += 1,
                _ => {}
            }
        }
        Enrichment {
            map,
            memberships: memberships.items,
            reputations: reputations.items,
            names,
            watched,
            skipped,
        }
    }
}

/// One prefix's own facts.
fn apply(membership: &mut Membership, fact: Fact, reputations: &[Reputation]) {
    match fact {
        Fact::TorExit => membership.tor_exit = true,
        Fact::Trusted => membership.trusted = true,
        Fact::List(id) => {
            if let Err(at) = membership.lists.binary_search(&id) {
                let mut lists = membership.lists.to_vec();
                lists.insert(at, id);
                membership.lists = lists.into();
            }
        }
        Fact::Reputation(id) => {
            let severity = |id: u32| get(reputations, id).map(|r| r.classification.severity());
            if membership
                .reputation
                .is_none_or(|old| severity(id) > severity(old))
            {
                membership.reputation = Some(id);
            }
        }
    }
}

/// A prefix's own facts joined with those of its closest enclosing prefix (already folded).
fn fold(parent: Option<&Membership>, own: Membership, reputations: &[Reputation]) -> Membership {
    let watched = own.tor_exit
        || !own.lists.is_empty()
        || own
            .reputation
            .and_then(|r| get(reputations, r))
            .is_some_and(|r| r.classification.is_alerting());
    let Some(parent) = parent else {
        return Membership { watched, ..own };
    };
    let lists = if parent.lists.is_empty() {
        own.lists
    } else {
        let mut lists: Vec<u32> = parent.lists.iter().chain(&own.lists).copied().collect();
        lists.sort_unstable();
        lists.dedup();
        lists.into()
    };
    Membership {
        tor_exit: own.tor_exit || parent.tor_exit,
        trusted: own.trusted || parent.trusted,
        watched,
        // The longest prefix's verdict wins.
        reputation: own.reputation.or(parent.reputation),
        lists,
    }
}

fn get<T>(items: &[T], id: u32) -> Option<&T> {
    items.get(usize::try_from(id).ok()?)
}

/// `::ffff:a.b.c.d/n` (n ≥ 96) becomes `a.b.c.d/(n-96)`, so that mapped entries match the IPv4
/// addresses lookups turn mapped addresses into.
fn to_ipnet(cidr: Cidr) -> IpNet {
    let (network, prefix) = match cidr.network() {
        IpAddr::V6(a) => match (a.to_ipv4_mapped(), cidr.prefix().checked_sub(96)) {
            (Some(v4), Some(v4_prefix)) => (IpAddr::V4(v4), v4_prefix),
            _ => (IpAddr::V6(a), cidr.prefix()),
        },
        v4 @ IpAddr::V4(_) => (v4, cidr.prefix()),
    };
    // `Cidr` keeps the prefix within its family's bounds, so the fallback is never taken.
    IpNet::new(network, prefix).unwrap_or_else(|_| IpNet::from(network))
}

/// How many prefixes [`Enrichment::watched_prefixes`] yields, per family (to size BPF maps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchedCounts {
    pub v4: usize,
    pub v6: usize,
}

impl WatchedCounts {
    #[must_use]
    pub fn total(self) -> usize {
        self.v4.saturating_add(self.v6)
    }
}

/// The loaded lists: immutable, so a reload builds a new one and the caller swaps an `Arc`.
#[derive(Debug)]
pub struct Enrichment {
    /// Prefix → folded membership id.
    map: JointPrefixMap<IpNet, u32>,
    memberships: Vec<Membership>,
    reputations: Vec<Reputation>,
    names: Vec<String>,
    watched: WatchedCounts,
    skipped: usize,
}

impl Default for Enrichment {
    fn default() -> Self {
        EnrichmentBuilder::new().build()
    }
}

impl Enrichment {
    #[must_use]
    pub fn builder() -> EnrichmentBuilder {
        EnrichmentBuilder::new()
    }

    /// Everything known about `ip`; an IPv4-mapped IPv6 address is looked up as IPv4.
    /// One longest-prefix walk, no allocation.
    #[must_use]
    pub fn lookup(&self, ip: IpAddr) -> Hit<'_> {
        let id = match ip {
            IpAddr::V4(a) => self.lpm_v4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.lpm_v4(v4),
                None => self.map.t2.get_lpm(&Ipv6Net::from(a)).map(|(_, id)| *id),
            },
        };
        let membership = id
            .and_then(|id| usize::try_from(id).ok())
            .and_then(|id| self.memberships.get(id));
        let Some(m) = membership else {
            return Hit {
                tor_exit: false,
                trusted: false,
                reputation: None,
                lists: Lists {
                    names: &self.names,
                    ids: &[],
                },
            };
        };
        Hit {
            tor_exit: m.tor_exit,
            trusted: m.trusted,
            reputation: m
                .reputation
                .and_then(|r| usize::try_from(r).ok())
                .and_then(|r| self.reputations.get(r)),
            lists: Lists {
                names: &self.names,
                ids: &m.lists,
            },
        }
    }

    fn lpm_v4(&self, a: Ipv4Addr) -> Option<u32> {
        self.map.t1.get_lpm(&Ipv4Net::from(a)).map(|(_, id)| *id)
    }

    /// Every prefix worth an alert, for the kernel's LPM-trie map: Tor exits, reputation entries
    /// classified malicious or suspicious, and every named list's entries; not trusted networks,
    /// not benign or unknown reputation. IPv4 first (tagged by the `IpAddr` variant), each
    /// prefix once. A benign or trusted prefix inside a watched one is not carved out: the kernel
    /// only decides what cannot matter, and [`lookup`](Self::lookup) keeps the final word.
    pub fn watched_prefixes(&self) -> impl Iterator<Item = (IpAddr, u8)> + '_ {
        let watched = |id: &u32| {
            usize::try_from(*id)
                .ok()
                .and_then(|id| self.memberships.get(id))
                .is_some_and(|m| m.watched)
        };
        let v4 = self
            .map
            .t1
            .iter()
            .filter(move |(_, id)| watched(id))
            .map(|(p, _)| (IpAddr::V4(p.network()), p.prefix_len()));
        let v6 = self
            .map
            .t2
            .iter()
            .filter(move |(_, id)| watched(id))
            .map(|(p, _)| (IpAddr::V6(p.network()), p.prefix_len()));
        v4.chain(v6)
    }

    #[must_use]
    pub fn watched_counts(&self) -> WatchedCounts {
        self.watched
    }

    /// Distinct prefixes from all sources, trusted networks included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The named lists, in configuration order.
    #[must_use]
    pub fn list_names(&self) -> &[String] {
        &self.names
    }

    /// Entries dropped because an internal `u32` index ran out (more than four billion distinct
    /// facts); always 0 in practice, reported rather than panicking.
    #[must_use]
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

/// What [`Enrichment::lookup`] found. `Copy`, borrowed from the database, never allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit<'a> {
    pub tor_exit: bool,
    /// Inside a configured trusted network.
    pub trusted: bool,
    /// The verdict of the longest reputation prefix containing the address.
    pub reputation: Option<&'a Reputation>,
    /// Every named list with a prefix containing the address (at any length).
    pub lists: Lists<'a>,
}

impl Hit<'_> {
    /// Tor exit, malicious or suspicious reputation, or on a named list: the same test that
    /// selects [`Enrichment::watched_prefixes`], except that here the longest reputation prefix
    /// decides. Trust is left to the policy.
    #[must_use]
    pub fn is_watched(&self) -> bool {
        self.tor_exit
            || !self.lists.is_empty()
            || self
                .reputation
                .is_some_and(|r| r.classification.is_alerting())
    }

    /// Nothing at all is known about the address.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.tor_exit && !self.trusted && self.reputation.is_none() && self.lists.is_empty()
    }
}

/// The named lists an address is on, in configuration order; names are resolved on iteration.
#[derive(Clone, Copy)]
pub struct Lists<'a> {
    names: &'a [String],
    ids: &'a [u32],
}

impl<'a> Lists<'a> {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let names = self.names;
        self.ids
            .iter()
            .filter_map(move |id| names.get(usize::try_from(*id).ok()?).map(String::as_str))
    }

    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|n| n == name)
    }

    /// Allocates; for records and tests.
    #[must_use]
    pub fn to_vec(&self) -> Vec<&'a str> {
        self.iter().collect()
    }
}

impl fmt::Debug for Lists<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Lists<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Lists<'_> {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::iplist::parse::{
        Classification, parse_network,
        tests::{Rng, cidr, cidrs, ip},
    };

    fn rep(network: &str, classification: Classification, name: &str) -> ReputationEntry {
        ReputationEntry {
            network: cidr(network),
            reputation: Reputation {
                classification,
                name: Some(name.to_owned()).filter(|n| !n.is_empty()),
                tags: Vec::new(),
            },
        }
    }

    // --- lookups ----------------------------------------------------------------------------

    #[test]
    fn longest_reputation_prefix_wins() {
        let mut builder = Enrichment::builder();
        builder.reputation(&[
            rep("192.168.0.0/16", Classification::Benign, "corp"),
            rep("192.168.7.7/32", Classification::Malicious, "implant"),
            rep("192.168.8.0/24", Classification::Unknown, ""),
        ]);
        let db = builder.build();
        let at = |s: &str| db.lookup(ip(s)).reputation.map(|r| r.classification);
        assert_eq!(at("192.168.7.7"), Some(Classification::Malicious));
        assert_eq!(
            db.lookup(ip("192.168.7.7"))
                .reputation
                .and_then(|r| r.name.as_deref()),
            Some("implant")
        );
        assert_eq!(at("192.168.7.8"), Some(Classification::Benign));
        assert_eq!(at("192.168.0.1"), Some(Classification::Benign));
        assert_eq!(at("192.168.8.200"), Some(Classification::Unknown));
        assert_eq!(at("192.169.0.1"), None);
        assert!(db.lookup(ip("192.168.7.7")).is_watched());
        assert!(!db.lookup(ip("192.168.7.8")).is_watched());
    }

    #[test]
    fn same_prefix_twice_keeps_the_most_severe_verdict() {
        let mut builder = Enrichment::builder();
        builder.reputation(&[
            rep("1.2.3.4", Classification::Suspicious, "first"),
            rep("1.2.3.4", Classification::Benign, "whitelist glitch"),
            rep("1.2.3.4", Classification::Malicious, "worst"),
            rep("1.2.3.4", Classification::Malicious, "later tie"),
        ]);
        let db = builder.build();
        let hit = db.lookup(ip("1.2.3.4"));
        assert_eq!(
            hit.reputation.and_then(|r| r.name.as_deref()),
            Some("worst")
        );
    }

    #[test]
    fn every_list_containing_the_ip_in_configuration_order() {
        let mut builder = Enrichment::builder();
        builder
            .list("spamhaus_drop", &cidrs(&["10.1.0.0/16"]))
            .list("firehol_level1", &cidrs(&["10.0.0.0/8", "10.1.2.3"]))
            .list("feodo", &cidrs(&["10.1.2.3", "10.1.2.3/32"]))
            .list("empty", &[])
            .list("elsewhere", &cidrs(&["11.0.0.0/8"]));
        let db = builder.build();
        assert_eq!(
            db.lookup(ip("10.1.2.3")).lists.to_vec(),
            vec!["spamhaus_drop", "firehol_level1", "feodo"]
        );
        assert_eq!(
            db.lookup(ip("10.1.9.9")).lists.to_vec(),
            vec!["spamhaus_drop", "firehol_level1"]
        );
        assert_eq!(
            db.lookup(ip("10.2.0.1")).lists.to_vec(),
            vec!["firehol_level1"]
        );
        assert!(db.lookup(ip("12.0.0.1")).lists.is_empty());
        assert_eq!(db.lookup(ip("10.1.2.3")).lists.len(), 3);
        assert_eq!(
            db.list_names(),
            [
                "spamhaus_drop",
                "firehol_level1",
                "feodo",
                "empty",
                "elsewhere"
            ]
        );
    }

    #[test]
    fn tor_trusted_ipv6_and_ipv4_mapped_lookups() {
        let mut builder = Enrichment::builder();
        builder
            .tor_exits(&cidrs(&["185.220.101.1", "2a0b:f4c2::23"]))
            .list("mapped_entry", &cidrs(&["::ffff:203.0.113.0/120"]))
            .list("v6", &cidrs(&["2001:db8:1::/48"]))
            .trusted(&cidrs(&["185.220.0.0/16", "2001:db8::/32"]));
        let db = builder.build();

        let tor = db.lookup(ip("185.220.101.1"));
        assert!(tor.tor_exit && tor.trusted && tor.is_watched());
        let mapped = db.lookup(ip("::ffff:185.220.101.1"));
        assert_eq!(mapped, tor, "a mapped address is looked up as IPv4");
        let trusted_only = db.lookup(ip("::ffff:185.220.9.9"));
        assert!(trusted_only.trusted && !trusted_only.tor_exit && !trusted_only.is_watched());

        assert!(db.lookup(ip("2a0b:f4c2::23")).tor_exit);
        assert!(!db.lookup(ip("2a0b:f4c2::24")).tor_exit);
        let v6 = db.lookup(ip("2001:db8:1::5"));
        assert_eq!(v6.lists.to_vec(), vec!["v6"]);
        assert!(v6.trusted);
        assert!(db.lookup(ip("2001:db8:2::5")).lists.is_empty());

        // An entry written in the mapped form matches the IPv4 address, mapped or not.
        assert!(db.lookup(ip("203.0.113.9")).lists.contains("mapped_entry"));
        assert!(
            db.lookup(ip("::ffff:203.0.113.9"))
                .lists
                .contains("mapped_entry")
        );
        // The IPv4-compatible form is not mapped.
        assert!(db.lookup(ip("::203.0.113.9")).is_empty());

        let miss = db.lookup(ip("8.8.8.8"));
        assert!(miss.is_empty() && !miss.is_watched());
    }

    /// Random sources for the brute-force check: addresses drawn from 4096 values per family so
    /// that prefixes nest, collide and sit side by side.
    struct RandomSources {
        tor: Vec<Cidr>,
        trusted: Vec<Cidr>,
        lists: Vec<(String, Vec<Cidr>)>,
        reputation: Vec<ReputationEntry>,
    }

    impl RandomSources {
        fn new(rng: &mut Rng) -> Self {
            const CLASSES: [Classification; 4] = [
                Classification::Malicious,
                Classification::Suspicious,
                Classification::Benign,
                Classification::Unknown,
            ];
            let pick = |n: usize, rng: &mut Rng| -> Vec<Cidr> {
                (0..n).map(|_| random_cidr(rng)).collect()
            };
            Self {
                tor: pick(20, rng),
                trusted: pick(10, rng),
                lists: (0..4)
                    .map(|i| (format!("list{i}"), pick(30, rng)))
                    .collect(),
                reputation: (0..40)
                    .map(|i| ReputationEntry {
                        network: random_cidr(rng),
                        reputation: Reputation {
                            classification: CLASSES[i % 4],
                            name: Some(format!("r{i}")),
                            tags: Vec::new(),
                        },
                    })
                    .collect(),
            }
        }

        fn build(&self) -> Enrichment {
            let mut builder = Enrichment::builder();
            builder.tor_exits(&self.tor).reputation(&self.reputation);
            for (name, entries) in &self.lists {
                builder.list(name, entries);
            }
            builder.trusted(&self.trusted);
            builder.build()
        }

        /// The longest containing reputation prefix; on a tie the first of the most severe.
        fn reputation_of(&self, addr: IpAddr) -> Option<&Reputation> {
            let containing = || self.reputation.iter().filter(|e| e.network.contains(addr));
            let longest = containing().map(|e| e.network.prefix()).max()?;
            containing()
                .filter(|e| e.network.prefix() == longest)
                .fold(None::<&ReputationEntry>, |best, e| match best {
                    Some(b)
                        if b.reputation.classification.severity()
                            >= e.reputation.classification.severity() =>
                    {
                        Some(b)
                    }
                    _ => Some(e),
                })
                .map(|e| &e.reputation)
        }

        fn watched_sorted(&self) -> Vec<(IpAddr, u8)> {
            let alerting = self
                .reputation
                .iter()
                .filter(|e| e.reputation.classification.is_alerting())
                .map(|e| &e.network);
            let mut watched: Vec<(IpAddr, u8)> = self
                .tor
                .iter()
                .chain(self.lists.iter().flat_map(|(_, e)| e))
                .chain(alerting)
                .map(|c| (c.network(), c.prefix()))
                .collect();
            sort_prefixes(&mut watched);
            watched.dedup();
            watched
        }
    }

    fn random_ip(rng: &mut Rng) -> IpAddr {
        let low = rng.below(1 << 12);
        if rng.below(2) == 0 {
            let low = u32::try_from(low).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 | low << 4))
        } else {
            IpAddr::V6(std::net::Ipv6Addr::from_bits(
                0x2001_0db8_u128 << 96 | u128::from(low) << 100,
            ))
        }
    }

    fn random_cidr(rng: &mut Rng) -> Cidr {
        let addr = random_ip(rng);
        let (min, max) = match addr {
            IpAddr::V4(_) => (8, 32),
            IpAddr::V6(_) => (16, 128),
        };
        let prefix = min + rng.below(max - min + 1);
        let text = format!("{addr}/{prefix}");
        parse_network(&text).map_or_else(|e| panic!("{text}: {e}"), |(c, _)| c)
    }

    fn sort_prefixes(prefixes: &mut [(IpAddr, u8)]) {
        prefixes.sort_unstable_by_key(|(a, p)| (a.is_ipv6(), *a, *p));
    }

    /// Checks the folded trie against a brute-force reading of the same sources, on densely
    /// nested random prefixes (siblings, parents, duplicates) in both families.
    #[test]
    fn lookup_matches_brute_force_on_nested_random_prefixes() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for round in 0..20 {
            let sources = RandomSources::new(&mut rng);
            let db = sources.build();
            for _ in 0..2000 {
                let addr = random_ip(&mut rng);
                let hit = db.lookup(addr);
                let within = |set: &[Cidr]| set.iter().any(|c| c.contains(addr));
                assert_eq!(hit.tor_exit, within(&sources.tor), "round {round} {addr}");
                assert_eq!(
                    hit.trusted,
                    within(&sources.trusted),
                    "round {round} {addr}"
                );
                let lists: Vec<&str> = sources
                    .lists
                    .iter()
                    .filter(|(_, entries)| within(entries))
                    .map(|(name, _)| name.as_str())
                    .collect();
                assert_eq!(hit.lists.to_vec(), lists, "round {round} {addr}");
                assert_eq!(
                    hit.reputation,
                    sources.reputation_of(addr),
                    "round {round} {addr}"
                );
            }
            let watched: Vec<(IpAddr, u8)> = db.watched_prefixes().collect();
            let mut sorted = watched.clone();
            sort_prefixes(&mut sorted);
            assert_eq!(sorted, sources.watched_sorted(), "round {round}");
            let counts = db.watched_counts();
            assert_eq!(
                counts.v4,
                watched.iter().filter(|(a, _)| a.is_ipv4()).count()
            );
            assert_eq!(
                counts.v6,
                watched.iter().filter(|(a, _)| a.is_ipv6()).count()
            );
        }
    }

    // --- kernel export ----------------------------------------------------------------------

    #[test]
    fn watched_prefixes_exclude_benign_unknown_and_trusted() {
        let mut builder = Enrichment::builder();
        builder
            .tor_exits(&cidrs(&["185.220.101.1", "2a0b:f4c2::23"]))
            .reputation(&[
                rep("198.51.100.0/24", Classification::Malicious, "m"),
                rep("198.51.100.7", Classification::Benign, "carve-out"),
                rep("203.0.113.0/24", Classification::Suspicious, "s"),
                rep("192.0.2.0/24", Classification::Benign, "b"),
                rep("192.0.3.0/24", Classification::Unknown, "u"),
            ])
            .list(
                "drop",
                &cidrs(&["1.10.16.0/20", "185.220.101.1", "2001:db8::/32"]),
            )
            .trusted(&cidrs(&["10.0.0.0/8", "fd00::/8", "1.10.16.0/20"]));
        let db = builder.build();
        let watched: Vec<(IpAddr, u8)> = db.watched_prefixes().collect();
        assert_eq!(
            watched,
            vec![
                (ip("1.10.16.0"), 20),
                (ip("185.220.101.1"), 32),
                (ip("198.51.100.0"), 24),
                (ip("203.0.113.0"), 24),
                (ip("2001:db8::"), 32),
                (ip("2a0b:f4c2::23"), 128),
            ]
        );
        assert_eq!(db.watched_counts(), WatchedCounts { v4: 4, v6: 2 });
        assert_eq!(db.watched_counts().total(), 6);
        // The benign carve-out is not exported, and userspace still calls it benign.
        let carve_out = db.lookup(ip("198.51.100.7"));
        assert!(!carve_out.is_watched());
        assert!(db.lookup(ip("198.51.100.8")).is_watched());
    }

    #[test]
    fn database_is_shareable_and_empty_by_default() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Enrichment>();
        shareable::<Arc<Enrichment>>();
        let db = Enrichment::default();
        assert!(db.is_empty());
        assert!(db.lookup(ip("1.1.1.1")).is_empty());
        assert_eq!(db.watched_prefixes().count(), 0);
        assert_eq!(db.skipped(), 0);
    }
}
