//! Start-up scan of sockets that were already listening. INTERFACE STUB written by the lead: the
//! baseline helper owns this file and fills it in, keeping these signatures.

use std::net::SocketAddr;

/// A TCP socket found in LISTEN state at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListeningSocket {
    /// Socket inode (from `/proc/<pid>/net/tcp{,6}`), joined to `/proc/<pid>/fd/* -> socket:[inode]`.
    pub inode: u64,
    /// Network-namespace inode the socket lives in.
    pub netns: u64,
    /// Local address. IPv4-mapped IPv6 addresses are kept as IPv6 here; `family_v6` says which table.
    pub local: SocketAddr,
    /// Found in `tcp6` (an AF_INET6 socket).
    pub family_v6: bool,
    /// Thread-group ids owning the socket (several after fork); empty when no owner was found.
    pub owners: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Scans every network namespace reachable through `/proc/<pid>/net` for listening TCP sockets.
pub fn scan_listeners() -> Result<Vec<ListeningSocket>, BaselineError> {
    Ok(Vec::new())
}
