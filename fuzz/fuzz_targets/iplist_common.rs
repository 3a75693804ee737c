//! What the three list targets check once a file is parsed and its database built.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use monitor::{
    iplist::{Enrichment, Issues, MAX_REPORTED_LINES},
    netrange::Cidr,
};

/// The reports stay bounded and print (the daemon logs them with the file's path).
pub fn check_issues(bad: &Issues, normalised: &Issues) {
    for issues in [bad, normalised] {
        assert!(issues.shown().len() <= MAX_REPORTED_LINES);
        assert!(issues.shown().len() <= issues.count());
        for issue in issues.shown() {
            let _ = issue.at(Path::new("/fuzz/list")).to_string();
        }
    }
}

/// Every parsed prefix is found again, and lookups of arbitrary addresses (from the input's
/// first bytes) and the kernel's watched-prefix export do not panic.
pub fn check_database(db: &Enrichment, entries: impl Iterator<Item = Cidr>, data: &[u8]) {
    for (i, cidr) in entries.enumerate() {
        // Each prefix holds its own network address; a huge file needs no more than a sample.
        if i < 64 {
            let hit = db.lookup(cidr.network());
            assert!(
                hit.tor_exit || !hit.lists.is_empty() || hit.reputation.is_some(),
                "{cidr} was parsed but {} is not found",
                cidr.network()
            );
        }
    }
    let mut v4 = [0u8; 4];
    let mut v6 = [0u8; 16];
    for (dst, src) in v4.iter_mut().zip(data) {
        *dst = *src;
    }
    for (dst, src) in v6.iter_mut().zip(data.iter().rev()) {
        *dst = *src;
    }
    for ip in [
        IpAddr::V4(Ipv4Addr::from(v4)),
        IpAddr::V6(Ipv6Addr::from(v6)),
        IpAddr::V6(Ipv4Addr::from(v4).to_ipv6_mapped()),
    ] {
        let _ = db.lookup(ip).is_watched();
    }
    let _ = db.watched_prefixes().count();
    let _ = db.watched_counts().total();
}
