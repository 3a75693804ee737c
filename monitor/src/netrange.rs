//! Address ranges (CIDR blocks) for the policy's excluded networks and destination exceptions.
//!
//! An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is judged as the IPv4 address it carries: a
//! process that connects through an IPv6 socket to `::ffff:10.0.0.1` reaches 10.0.0.1, so an IPv4
//! block contains it. [`canonical`] does that conversion; the detections apply it to every address
//! before they look at it.
//!
//! # The default excluded networks
//!
//! `webserver_egress` ignores connections to every block of the IANA IPv4 and IPv6
//! Special-Purpose Address Registries (RFC 6890 and the RFCs that added entries since), plus the
//! two multicast blocks. [`SPECIAL_PURPOSE`] lists them with their RFCs; the embedded default
//! policy lists the same blocks (a unit test keeps the two equal):
//!
//! | block | what | RFC |
//! |---|---|---|
//! | 0.0.0.0/8 | "this network" | RFC 791 §3.2 |
//! | 10.0.0.0/8 | private use | RFC 1918 |
//! | 100.64.0.0/10 | shared address space (carrier-grade NAT) | RFC 6598 |
//! | 127.0.0.0/8 | loopback | RFC 1122 §3.2.1.3 |
//! | 169.254.0.0/16 | link local | RFC 3927 |
//! | 172.16.0.0/12 | private use | RFC 1918 |
//! | 192.0.0.0/24 | IETF protocol assignments | RFC 6890 §2.1 |
//! | 192.0.2.0/24 | documentation (TEST-NET-1) | RFC 5737 |
//! | 192.31.196.0/24 | AS112-v4 | RFC 7535 |
//! | 192.52.193.0/24 | AMT | RFC 7450 |
//! | 192.88.99.0/24 | deprecated 6to4 relay anycast | RFC 7526 |
//! | 192.168.0.0/16 | private use | RFC 1918 |
//! | 192.175.48.0/24 | direct delegation AS112 service | RFC 7534 |
//! | 198.18.0.0/15 | benchmarking | RFC 2544 |
//! | 198.51.100.0/24 | documentation (TEST-NET-2) | RFC 5737 |
//! | 203.0.113.0/24 | documentation (TEST-NET-3) | RFC 5737 |
//! | 224.0.0.0/4 | multicast | RFC 5771 |
//! | 240.0.0.0/4 | reserved | RFC 1112 §4 |
//! | 255.255.255.255/32 | limited broadcast | RFC 8190, RFC 919 §7 |
//! | `::1/128` | loopback | RFC 4291 |
//! | `::/128` | unspecified | RFC 4291 |
//! | `::ffff:0.0.0.0/96` | IPv4-mapped (judged as IPv4 anyway) | RFC 4291 |
//! | `64:ff9b::/96` | IPv4/IPv6 translation (NAT64 well-known prefix) | RFC 6052 |
//! | `64:ff9b:1::/48` | local-use IPv4/IPv6 translation | RFC 8215 |
//! | `100::/64` | discard-only | RFC 6666 |
//! | `100:0:0:1::/64` | dummy IPv6 prefix | RFC 9780 |
//! | `2001::/23` | IETF protocol assignments (Teredo, `ORCHIDv2`, …) | RFC 2928 |
//! | `2001:db8::/32` | documentation | RFC 3849 |
//! | `2002::/16` | 6to4 | RFC 3056 |
//! | `2620:4f:8000::/48` | direct delegation AS112 service | RFC 7534 |
//! | `3fff::/20` | documentation | RFC 9637 |
//! | `5f00::/16` | segment routing (`SRv6`) SIDs | RFC 9602 |
//! | `fc00::/7` | unique local | RFC 4193, RFC 8190 |
//! | `fe80::/10` | link-local unicast | RFC 4291 |
//! | `ff00::/8` | multicast | RFC 4291 |
//!
//! A destination in the NAT64 well-known prefix `64:ff9b::/96` is judged as the IPv4 address it
//! embeds (see [`canonical`]), so egress through a NAT64 translator to a public IPv4 address is
//! not hidden by the `64:ff9b::/96` block. `2002::/16` (6to4) and Teredo also embed IPv4 addresses but
//! are judged as IPv6: remove `2002::/16` from `excluded_networks` on a host that still uses 6to4.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// The IANA special-purpose blocks plus multicast, with the RFC that reserves each (see the
/// module documentation). The embedded default policy's `excluded_networks` equals this list.
pub const SPECIAL_PURPOSE: &[(&str, &str)] = &[
    ("0.0.0.0/8", "RFC 791"),
    ("10.0.0.0/8", "RFC 1918"),
    ("100.64.0.0/10", "RFC 6598"),
    ("127.0.0.0/8", "RFC 1122"),
    ("169.254.0.0/16", "RFC 3927"),
    ("172.16.0.0/12", "RFC 1918"),
    ("192.0.0.0/24", "RFC 6890"),
    ("192.0.2.0/24", "RFC 5737"),
    ("192.31.196.0/24", "RFC 7535"),
    ("192.52.193.0/24", "RFC 7450"),
    ("192.88.99.0/24", "RFC 7526"),
    ("192.168.0.0/16", "RFC 1918"),
    ("192.175.48.0/24", "RFC 7534"),
    ("198.18.0.0/15", "RFC 2544"),
    ("198.51.100.0/24", "RFC 5737"),
    ("203.0.113.0/24", "RFC 5737"),
    ("224.0.0.0/4", "RFC 5771"),
    ("240.0.0.0/4", "RFC 1112"),
    ("255.255.255.255/32", "RFC 8190"),
    ("::1/128", "RFC 4291"),
    ("::/128", "RFC 4291"),
    ("::ffff:0.0.0.0/96", "RFC 4291"),
    ("64:ff9b::/96", "RFC 6052"),
    ("64:ff9b:1::/48", "RFC 8215"),
    ("100::/64", "RFC 6666"),
    ("100:0:0:1::/64", "RFC 9780"),
    ("2001::/23", "RFC 2928"),
    ("2001:db8::/32", "RFC 3849"),
    ("2002::/16", "RFC 3056"),
    ("2620:4f:8000::/48", "RFC 7534"),
    ("3fff::/20", "RFC 9637"),
    ("5f00::/16", "RFC 9602"),
    ("fc00::/7", "RFC 4193"),
    ("fe80::/10", "RFC 4291"),
    ("ff00::/8", "RFC 4291"),
];

/// The address a destination is judged as: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) becomes
/// the IPv4 address it carries, and so does an address in the NAT64 well-known prefix
/// `64:ff9b::/96` (RFC 6052 §2.1: the IPv4 address is the last 32 bits), because a DNS64/NAT64
/// host reaches every IPv4 destination through it: judged as IPv6 it would sit inside an excluded
/// block and hide public IPv4 egress. Anything else is unchanged (the deprecated
/// "IPv4-compatible" `::a.b.c.d` form, the local-use prefix `64:ff9b:1::/48` whose embedding
/// depends on the operator's prefix length, 6to4 and Teredo stay IPv6).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let o = v6.octets();
            if o[..12] == NAT64_WELL_KNOWN_PREFIX {
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            ip
        }
        IpAddr::V4(_) => ip,
    }
}

/// `64:ff9b::/96`, the first 12 bytes.
const NAT64_WELL_KNOWN_PREFIX: [u8; 12] = [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0];

/// 127.0.0.0/8, `::1`, or an IPv4-mapped 127.x address (a bound address, so no NAT64 unwrapping).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// 224.0.0.0/4, `ff00::/8`, or an IPv4-mapped multicast address (a bound address: a UDP socket
/// bound to a multicast group's address receives only that group's datagrams).
pub fn is_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_multicast(), |v4| v4.is_multicast()),
        IpAddr::V4(v4) => v4.is_multicast(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an IP address")]
    Address(String),
    #[error("`{0}` is not a prefix length")]
    PrefixSyntax(String),
    #[error("prefix length /{prefix} out of range 0-{max} for {family}")]
    PrefixRange {
        prefix: u32,
        max: u8,
        family: &'static str,
    },
    #[error("{input} has host bits set; did you mean {suggestion}?")]
    HostBits { input: String, suggestion: Cidr },
}

/// An IPv4 or IPv6 block: a network address and a prefix length within the family's bounds.
/// Host bits are zero (the parser rejects `10.0.0.1/8` rather than guess what was meant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `network` must have no bits set beyond `prefix`.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let max = max_prefix(network);
        if prefix > max {
            return Err(CidrError::PrefixRange {
                prefix: prefix.into(),
                max,
                family: family_name(network),
            });
        }
        let cidr = Self { network, prefix };
        let masked = cidr.masked();
        if masked.network != network {
            return Err(CidrError::HostBits {
                input: format!("{network}/{prefix}"),
                suggestion: masked,
            });
        }
        Ok(cidr)
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in the block. An IPv4 block also contains the IPv4-mapped IPv6 form of
    /// its addresses; an IPv6 block is matched against the IPv6 address as given (so
    /// `::ffff:0:0/96` contains `::ffff:1.2.3.4`).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix_v4(net, ip, self.prefix),
            (IpAddr::V4(net), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|ip| same_prefix_v4(net, ip, self.prefix)),
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix_v6(net, ip, self.prefix),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }

    fn masked(&self) -> Self {
        let network = match self.network {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & mask_v4(self.prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask_v6(self.prefix))),
        };
        Self {
            network,
            prefix: self.prefix,
        }
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn family_name(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

fn mask_v4(prefix: u8) -> u32 {
    // checked_shl: a shift by 32 (prefix 0) would overflow.
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

fn same_prefix_v4(net: Ipv4Addr, ip: Ipv4Addr, prefix: u8) -> bool {
    (net.to_bits() ^ ip.to_bits()) & mask_v4(prefix) == 0
}

fn same_prefix_v6(net: Ipv6Addr, ip: Ipv6Addr, prefix: u8) -> bool {
    (net.to_bits() ^ ip.to_bits()) & mask_v6(prefix) == 0
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `10.0.0.0/8`, `fe80::/10`, or a bare address (a /32 or /128 block).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| CidrError::Address(addr.to_owned()))?;
        let prefix = match prefix {
            None => max_prefix(network),
            Some(p) => {
                let p = p.trim();
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CidrError::PrefixSyntax(p.to_owned()));
                }
                let value: u32 = p
                    .parse()
                    .map_err(|_| CidrError::PrefixSyntax(p.to_owned()))?;
                u8::try_from(value)
                    .ok()
                    .filter(|v| *v <= max_prefix(network))
                    .ok_or(CidrError::PrefixRange {
                        prefix: value,
                        max: max_prefix(network),
                        family: family_name(network),
                    })?
            }
        };
        Self::new(network, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or_else(|e| panic!("test address {s}: {e}"))
    }

    fn mapped(v4: &str) -> IpAddr {
        match ip(v4) {
            IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()),
            IpAddr::V6(_) => panic!("{v4} is not IPv4"),
        }
    }

    /// (block, first address, last address, address just before, address just after).
    /// Written out by hand rather than computed, so the test does not share the code it checks.
    type Edges = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    );

    const V4_EDGES: &[Edges] = &[
        (
            "0.0.0.0/8",
            "0.0.0.0",
            "0.255.255.255",
            None,
            Some("1.0.0.0"),
        ),
        (
            "10.0.0.0/8",
            "10.0.0.0",
            "10.255.255.255",
            Some("9.255.255.255"),
            Some("11.0.0.0"),
        ),
        (
            "100.64.0.0/10",
            "100.64.0.0",
            "100.127.255.255",
            Some("100.63.255.255"),
            Some("100.128.0.0"),
        ),
        (
            "127.0.0.0/8",
            "127.0.0.0",
            "127.255.255.255",
            Some("126.255.255.255"),
            Some("128.0.0.0"),
        ),
        (
            "169.254.0.0/16",
            "169.254.0.0",
            "169.254.255.255",
            Some("169.253.255.255"),
            Some("169.255.0.0"),
        ),
        (
            "172.16.0.0/12",
            "172.16.0.0",
            "172.31.255.255",
            Some("172.15.255.255"),
            Some("172.32.0.0"),
        ),
        (
            "192.0.0.0/24",
            "192.0.0.0",
            "192.0.0.255",
            Some("191.255.255.255"),
            Some("192.0.1.0"),
        ),
        (
            "192.0.2.0/24",
            "192.0.2.0",
            "192.0.2.255",
            Some("192.0.1.255"),
            Some("192.0.3.0"),
        ),
        (
            "192.31.196.0/24",
            "192.31.196.0",
            "192.31.196.255",
            Some("192.31.195.255"),
            Some("192.31.197.0"),
        ),
        (
            "192.52.193.0/24",
            "192.52.193.0",
            "192.52.193.255",
            Some("192.52.192.255"),
            Some("192.52.194.0"),
        ),
        (
            "192.88.99.0/24",
            "192.88.99.0",
            "192.88.99.255",
            Some("192.88.98.255"),
            Some("192.88.100.0"),
        ),
        (
            "192.168.0.0/16",
            "192.168.0.0",
            "192.168.255.255",
            Some("192.167.255.255"),
            Some("192.169.0.0"),
        ),
        (
            "192.175.48.0/24",
            "192.175.48.0",
            "192.175.48.255",
            Some("192.175.47.255"),
            Some("192.175.49.0"),
        ),
        (
            "198.18.0.0/15",
            "198.18.0.0",
            "198.19.255.255",
            Some("198.17.255.255"),
            Some("198.20.0.0"),
        ),
        (
            "198.51.100.0/24",
            "198.51.100.0",
            "198.51.100.255",
            Some("198.51.99.255"),
            Some("198.51.101.0"),
        ),
        (
            "203.0.113.0/24",
            "203.0.113.0",
            "203.0.113.255",
            Some("203.0.112.255"),
            Some("203.0.114.0"),
        ),
        (
            "224.0.0.0/4",
            "224.0.0.0",
            "239.255.255.255",
            Some("223.255.255.255"),
            Some("240.0.0.0"),
        ),
        (
            "240.0.0.0/4",
            "240.0.0.0",
            "255.255.255.255",
            Some("239.255.255.255"),
            None,
        ),
        (
            "255.255.255.255/32",
            "255.255.255.255",
            "255.255.255.255",
            Some("255.255.255.254"),
            None,
        ),
    ];

    const V6_EDGES: &[Edges] = &[
        ("::1/128", "::1", "::1", Some("::"), Some("::2")),
        ("::/128", "::", "::", None, Some("::1")),
        (
            "::ffff:0.0.0.0/96",
            "::ffff:0:0",
            "::ffff:ffff:ffff",
            Some("::fffe:ffff:ffff"),
            Some("::1:0:0:0"),
        ),
        (
            "64:ff9b::/96",
            "64:ff9b::",
            "64:ff9b::ffff:ffff",
            Some("64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("64:ff9b::1:0:0"),
        ),
        (
            "64:ff9b:1::/48",
            "64:ff9b:1::",
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            Some("64:ff9b:0:ffff:ffff:ffff:ffff:ffff"),
            Some("64:ff9b:2::"),
        ),
        (
            "100::/64",
            "100::",
            "100::ffff:ffff:ffff:ffff",
            Some("ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("100:0:0:1::"),
        ),
        (
            "100:0:0:1::/64",
            "100:0:0:1::",
            "100::1:ffff:ffff:ffff:ffff",
            Some("100::ffff:ffff:ffff:ffff"),
            Some("100:0:0:2::"),
        ),
        (
            "2001::/23",
            "2001::",
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("2001:200::"),
        ),
        (
            "2001:db8::/32",
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("2001:db9::"),
        ),
        (
            "2002::/16",
            "2002::",
            "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("2003::"),
        ),
        (
            "2620:4f:8000::/48",
            "2620:4f:8000::",
            "2620:4f:8000:ffff:ffff:ffff:ffff:ffff",
            Some("2620:4f:7fff:ffff:ffff:ffff:ffff:ffff"),
            Some("2620:4f:8001::"),
        ),
        (
            "3fff::/20",
            "3fff::",
            "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("3fff:1000::"),
        ),
        (
            "5f00::/16",
            "5f00::",
            "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("5f01::"),
        ),
        (
            "fc00::/7",
            "fc00::",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("fe00::"),
        ),
        (
            "fe80::/10",
            "fe80::",
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("fec0::"),
        ),
        (
            "ff00::/8",
            "ff00::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            None,
        ),
    ];

    fn check_edges(
        block: &str,
        first: &str,
        last: &str,
        before: Option<&str>,
        after: Option<&str>,
    ) {
        let cidr: Cidr = block.parse().unwrap_or_else(|e| panic!("{block}: {e}"));
        assert_eq!(cidr.to_string(), block, "display round-trip");
        assert!(cidr.contains(ip(first)), "{block} must contain {first}");
        assert!(cidr.contains(ip(last)), "{block} must contain {last}");
        for outside in [before, after].into_iter().flatten() {
            assert!(
                !cidr.contains(ip(outside)),
                "{block} must not contain {outside}"
            );
        }
    }

    #[test]
    fn every_ipv4_special_purpose_block_edges_including_mapped_form() {
        for &(block, first, last, before, after) in V4_EDGES {
            check_edges(block, first, last, before, after);
            let cidr: Cidr = block.parse().expect("checked above");
            assert!(
                cidr.contains(mapped(first)),
                "{block} must contain ::ffff:{first}"
            );
            assert!(
                cidr.contains(mapped(last)),
                "{block} must contain ::ffff:{last}"
            );
            for outside in [before, after].into_iter().flatten() {
                assert!(
                    !cidr.contains(mapped(outside)),
                    "{block} must not contain ::ffff:{outside}"
                );
            }
        }
    }

    #[test]
    fn every_ipv6_special_purpose_block_edges() {
        for &(block, first, last, before, after) in V6_EDGES {
            check_edges(block, first, last, before, after);
        }
    }

    #[test]
    fn edge_tables_cover_exactly_the_documented_list() {
        let tested: Vec<&str> = V4_EDGES.iter().chain(V6_EDGES).map(|row| row.0).collect();
        let listed: Vec<&str> = SPECIAL_PURPOSE.iter().map(|row| row.0).collect();
        assert_eq!(tested, listed);
    }

    #[test]
    fn ipv4_block_never_contains_plain_ipv6_and_vice_versa() {
        let v4: Cidr = "0.0.0.0/0".parse().expect("valid");
        let v6: Cidr = "::/0".parse().expect("valid");
        assert!(!v4.contains(ip("2001:db8::1")));
        assert!(
            v4.contains(ip("::ffff:8.8.8.8")),
            "mapped is judged as IPv4"
        );
        assert!(!v6.contains(ip("8.8.8.8")));
        // The IPv4-compatible form is not a mapped address.
        assert!(!v4.contains(ip("::8.8.8.8")));
    }

    #[test]
    fn canonical_and_loopback() {
        assert_eq!(canonical(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        // NAT64 well-known prefix: the embedded IPv4 address is what is reached.
        assert_eq!(canonical(ip("64:ff9b::5db8:d822")), ip("93.184.216.34"));
        assert_eq!(canonical(ip("64:ff9b::a00:1")), ip("10.0.0.1"));
        assert_eq!(canonical(ip("64:ff9b:1::a00:1")), ip("64:ff9b:1::a00:1"));
        assert_eq!(canonical(ip("2002:5db8:d822::1")), ip("2002:5db8:d822::1"));
        assert!(!is_loopback(ip("64:ff9b::7f00:1")));
        assert!(is_loopback(ip("::ffff:127.0.0.2")));
        assert!(is_loopback(ip("::1")));
        assert_eq!(canonical(ip("::1")), ip("::1"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
        assert!(is_loopback(ip("127.0.0.53")));
        assert!(is_loopback(ip("::ffff:127.0.0.1")));
        assert!(is_loopback(ip("::1")));
        assert!(!is_loopback(ip("0.0.0.0")));
        assert!(!is_loopback(ip("::")));
        assert!(!is_loopback(ip("10.0.0.1")));
    }

    #[test]
    fn parse_errors_and_bounds() {
        assert_eq!("10.0.0.7".parse::<Cidr>().map(|c| c.prefix()), Ok(32));
        assert_eq!("2001:db8::1".parse::<Cidr>().map(|c| c.prefix()), Ok(128));
        assert_eq!("0.0.0.0/0".parse::<Cidr>().map(|c| c.prefix()), Ok(0));
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixRange {
                prefix: 33,
                max: 32,
                ..
            })
        ));
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::PrefixRange {
                prefix: 129,
                max: 128,
                ..
            })
        ));
        assert!(matches!(
            "10.0.0.0/999999999999".parse::<Cidr>(),
            Err(CidrError::PrefixSyntax(_))
        ));
        assert!(matches!(
            "10.0.0.0/-1".parse::<Cidr>(),
            Err(CidrError::PrefixSyntax(_))
        ));
        assert!(matches!(
            "10.0.0.0/".parse::<Cidr>(),
            Err(CidrError::PrefixSyntax(_))
        ));
        assert!(matches!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::Address(_))
        ));
        assert!(matches!(
            "nginx".parse::<Cidr>(),
            Err(CidrError::Address(_))
        ));
        let err = "10.0.0.1/8".parse::<Cidr>().expect_err("host bits");
        assert_eq!(
            err.to_string(),
            "10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"
        );
    }

    #[test]
    fn public_addresses_outside_every_default_block() {
        let blocks: Vec<Cidr> = SPECIAL_PURPOSE
            .iter()
            .map(|(b, _)| b.parse().expect("valid default block"))
            .collect();
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "::ffff:8.8.8.8",
            "2606:4700::1111",
            "2a00:1450::1",
            "64:ff9b::808:808",
        ] {
            let addr = canonical(ip(public));
            assert!(
                !blocks.iter().any(|b| b.contains(addr)),
                "{public} is public"
            );
        }
        for special in [
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fd00::1",
            "ff02::1",
            "64:ff9b::a00:1",
        ] {
            let addr = canonical(ip(special));
            assert!(
                blocks.iter().any(|b| b.contains(addr)),
                "{special} is special-purpose"
            );
        }
    }
}
