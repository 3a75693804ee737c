//! Community ID v1 (Corelight's flow hash, the `community_id` Zeek's `conn.log`, Suricata's EVE
//! and kunai write): a record's 5-tuple hashed with a seed, so that a host alert and the network
//! logs of the same flow share one string. The hash orders the two endpoints itself: the same
//! flow seen from either end (a connect and the peer's accept) gets the same id.
//!
//! Computed with the `community-id` crate; `monitor/tests/community_id_reference.rs` compares
//! it with Corelight's Python reference on recorded tuples.

use std::net::IpAddr;

use crate::record::{Protocol, SocketInfo};

/// `IPPROTO_TCP` and `IPPROTO_UDP`.
const TCP: u8 = 6;
const UDP: u8 = 17;

/// The Community ID of the flow `socket` is one end of, with `seed` (0 unless the network's
/// sensors were configured with another); `None` when the record does not name the whole
/// 5-tuple the network saw: no remote side (a listen), a port not yet bound (0: a UDP send from
/// an unbound socket, before the kernel picks the source port), or an unspecified local address
/// (an unconnected UDP socket, whose source address is chosen per datagram). A sensor would hash
/// other values, so no id beats a wrong one.
///
/// An IPv6 socket talking to an IPv4-mapped address sends IPv4 packets: the record writes both
/// ends as IPv4 already, which is what the network sees and hashes.
pub fn of(seed: u16, socket: &SocketInfo) -> Option<String> {
    let remote = socket.remote?;
    let local = socket.local;
    if local.port == 0
        || remote.port == 0
        || local.ip.is_unspecified()
        || remote.ip.is_unspecified()
    {
        return None;
    }
    if matches!(
        (local.ip, remote.ip),
        (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_))
    ) {
        return None;
    }
    let protocol = match socket.protocol {
        Protocol::Tcp => TCP,
        Protocol::Udp => UDP,
    };
    community_id::calculate_community_id(
        seed,
        local.ip,
        remote.ip,
        Some(local.port),
        Some(remote.port),
        protocol,
        false,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Endpoint, Family};

    fn socket(protocol: Protocol, local: &str, remote: Option<&str>) -> SocketInfo {
        let endpoint = |s: &str| {
            let addr: std::net::SocketAddr = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            Endpoint {
                ip: addr.ip(),
                port: addr.port(),
            }
        };
        let local = endpoint(local);
        SocketInfo {
            protocol,
            family: if local.ip.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            local,
            remote: remote.map(endpoint),
            mapped_ipv4: false,
        }
    }

    #[test]
    fn the_spec_vectors_in_both_directions() {
        // From the Community ID spec's baseline (community-id-spec, baseline/baseline_data.json):
        // 1.2.3.4:1122 → 5.6.7.8:3344 over TCP and UDP, seed 0 and 1.
        for (protocol, seed, id) in [
            (Protocol::Tcp, 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
            (Protocol::Udp, 0, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="),
            (Protocol::Tcp, 1, "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
            (Protocol::Udp, 1, "1:OShq+iKDAMVouh/4bMxB9Sz4amw="),
        ] {
            let out = socket(protocol, "1.2.3.4:1122", Some("5.6.7.8:3344"));
            let back = socket(protocol, "5.6.7.8:3344", Some("1.2.3.4:1122"));
            assert_eq!(
                of(seed, &out).as_deref(),
                Some(id),
                "{protocol:?} seed {seed}"
            );
            assert_eq!(
                of(seed, &back).as_deref(),
                Some(id),
                "the other end's record"
            );
        }
    }

    #[test]
    fn incomplete_tuples_have_no_id() {
        for (protocol, local, remote) in [
            (Protocol::Tcp, "0.0.0.0:8080", None),
            (Protocol::Udp, "0.0.0.0:0", Some("127.0.0.1:9999")),
            (Protocol::Udp, "0.0.0.0:40000", Some("127.0.0.1:9999")),
            (Protocol::Udp, "[::]:40000", Some("[::1]:9999")),
            (Protocol::Tcp, "127.0.0.1:0", Some("127.0.0.1:80")),
            (Protocol::Udp, "127.0.0.1:40000", Some("127.0.0.1:0")),
            (Protocol::Tcp, "[::1]:40000", Some("127.0.0.1:80")),
        ] {
            assert_eq!(
                of(0, &socket(protocol, local, remote)),
                None,
                "{protocol:?} {local} {remote:?}"
            );
        }
        assert!(of(0, &socket(Protocol::Tcp, "[::1]:40000", Some("[::1]:80"))).is_some());
    }
}
