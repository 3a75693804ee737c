//! Start-up scan of sockets that were already listening before the monitor attached its probes:
//! TCP listeners and open UDP ports.
//!
//! The eBPF listen and bind hooks only see sockets that start listening or are bound after they
//! are attached, so every listener that predates the monitor is found here instead: each network
//! namespace reachable through `/proc/<pid>/net` has its `tcp`, `tcp6`, `udp` and `udp6` tables
//! read once, and every TCP socket in state `0A` (`TCP_LISTEN`) and every open UDP socket (below)
//! is joined to the processes holding it through `/proc/<pid>/fd/* -> socket:[inode]`. Owners
//! are searched in every process, whatever its namespace, because a socket can be passed to (or
//! inherited by) a process that has since moved to another netns.
//!
//! Which UDP sockets are open ports: the kernel's table lists every bound UDP socket, clients
//! included, and does not say whether a port was chosen with bind(2) or picked by autobind (a
//! client's first send or connect). A socket with a remote address is connected: it takes
//! datagrams from its peer only, a client (a resolver's query socket, an NTP client), and is left
//! out. Every other bound socket takes datagrams from anyone and is reported, including a client
//! that sends with `sendto` without connecting, whose autobound ephemeral port is just as
//! reachable while it lives; the live bind hook never reports those (it sees only bind(2) to a
//! chosen port), so such a client is reported at start-up only.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    io::{BufRead as _, BufReader, ErrorKind},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
};

use crate::{
    procfs::{self, vanished},
    record::Protocol,
};

/// A TCP socket found in LISTEN state, or an open UDP socket, at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListeningSocket {
    pub protocol: Protocol,
    /// Socket inode (from `/proc/<pid>/net/{tcp,udp}{,6}`), joined to
    /// `/proc/<pid>/fd/* -> socket:[inode]`.
    pub inode: u64,
    /// Network-namespace inode the socket lives in.
    pub netns: u64,
    /// Local address. IPv4-mapped IPv6 addresses are kept as IPv6 here; `family_v6` says which table.
    pub local: SocketAddr,
    /// Found in `tcp6` or `udp6` (an `AF_INET6` socket).
    pub family_v6: bool,
    /// Effective uid of the socket's creator, from the table itself: known even when no owning
    /// process can be seen.
    pub uid: u32,
    /// Thread-group ids owning the socket (several after fork); empty when no owner was found.
    pub owners: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source} in line {line:?}")]
    Parse {
        path: String,
        line: String,
        source: RowError,
    },
}

/// Why a row of a `/proc/<pid>/net/{tcp,udp}{,6}` table could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RowError(pub &'static str);

/// `st` of a socket in `TCP_LISTEN` (`include/net/tcp_states.h`: `TCP_LISTEN = 10`).
const TCP_LISTEN_STATE: u8 = 0x0A;

/// One listening row of a `/proc/<pid>/net/{tcp,udp}{,6}` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableEntry {
    pub local: SocketAddr,
    pub inode: u64,
    /// Effective uid of the socket's creator (the `uid` column).
    pub uid: u32,
}

/// Parses the text of `/proc/<pid>/net/tcp` or `udp` (`v6 == false`), `tcp6` or `udp6`
/// (`v6 == true`) and returns its listening sockets ([`parse_line`]). The first line (column
/// titles) is skipped.
pub fn parse_table(
    contents: &str,
    v6: bool,
    protocol: Protocol,
) -> Result<Vec<TableEntry>, RowError> {
    let mut out = Vec::new();
    for line in contents.lines().skip(1) {
        if let Some(entry) = parse_line(line, v6, protocol)? {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Parses one row; `Ok(None)` for a blank line, a TCP socket in another state than `LISTEN`, or a
/// UDP socket that is connected (its remote address is set) or not bound.
///
/// The layout comes from `tcp4_seq_show` / `tcp6_seq_show` (`net/ipv4/tcp_ipv4.c`,
/// `net/ipv6/tcp_ipv6.c`) and `udp4_format_sock` / `ip6_dgram_sock_seq_show`
/// (`net/ipv4/udp.c`, `net/ipv6/datagram.c`), the same columns:
/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
pub fn parse_line(
    line: &str,
    v6: bool,
    protocol: Protocol,
) -> Result<Option<TableEntry>, RowError> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.is_empty() {
        return Ok(None);
    }
    let [
        _sl,
        local,
        rem,
        st,
        _txrx,
        _tr,
        _retr,
        uid,
        _timeout,
        inode,
        ..,
    ] = fields[..]
    else {
        return Err(RowError("fewer than 10 columns"));
    };
    let state = hex(st).ok_or(RowError("state is not hex"))?;
    if protocol == Protocol::Tcp && state != u32::from(TCP_LISTEN_STATE) {
        return Ok(None);
    }
    let local = parse_address(local, v6).map_err(RowError)?;
    if protocol == Protocol::Udp {
        let rem = parse_address(rem, v6).map_err(RowError)?;
        // Connected (a client), or not bound to a port.
        if rem.port() != 0 || !rem.ip().is_unspecified() || local.port() == 0 {
            return Ok(None);
        }
    }
    if inode.is_empty() || !inode.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RowError("inode is not a decimal number"));
    }
    let inode = inode
        .parse::<u64>()
        .map_err(|_| RowError("inode is not a decimal number"))?;
    if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RowError("uid is not a decimal number"));
    }
    let uid = uid
        .parse::<u32>()
        .map_err(|_| RowError("uid is not a decimal number"))?;
    Ok(Some(TableEntry { local, inode, uid }))
}

/// Strict hex (no sign, no prefix, at most 8 digits), unlike `from_str_radix`, which takes a `+`.
fn hex(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Parses `ADDR:PORT` as the kernel prints it. The port is `%04X` of the host-order port. The
/// address words are the raw network-order bytes read as native-endian `u32`s and printed with
/// `%08X` (one word for IPv4, `s6_addr32[0..4]` for IPv6), so each word's hex turns back into the
/// original bytes through `to_ne_bytes`.
fn parse_address(field: &str, v6: bool) -> Result<SocketAddr, &'static str> {
    let (addr, port) = field.split_once(':').ok_or("address without ':'")?;
    let port = match hex(port) {
        Some(p) if port.len() == 4 => p as u16,
        _ => return Err("port is not 4 hex digits"),
    };
    let words = addr.len() / 8;
    if addr.len() % 8 != 0 || words != if v6 { 4 } else { 1 } {
        return Err(if v6 {
            "IPv6 address is not 32 hex digits"
        } else {
            "IPv4 address is not 8 hex digits"
        });
    }
    let mut bytes = [0u8; 16];
    if !addr.is_ascii() {
        return Err("address is not hex");
    }
    for i in 0..words {
        let word = hex(&addr[i * 8..i * 8 + 8]).ok_or("address is not hex")?;
        bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    };
    Ok(SocketAddr::new(ip, port))
}

/// Parses the target of a `/proc/<pid>/ns/net` link, `net:[4026531833]`.
fn parse_ns_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Parses the target of a `/proc/<pid>/fd/<n>` link when it is a socket, `socket:[19563]`.
fn parse_socket_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The port of the one TCP socket `pid` holds that listens on `ip` (`v6`: an `AF_INET6` socket,
/// in `tcp6`), in `pid`'s network namespace. A listen record the kernel took before autobind
/// picked the port (an `io_uring` listen without a bind, which no listen(2) return completes)
/// says port 0; this is what that listen got. `None` when `pid` is gone, holds no such socket,
/// or holds several on `ip` (which one the record is about cannot be told).
pub fn listening_port(proc_root: &Path, pid: u32, ip: IpAddr, v6: bool) -> Option<u16> {
    let dir = proc_root.join(pid.to_string());
    let held: HashSet<u64> = fs::read_dir(dir.join("fd"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|target| parse_socket_link(target.to_str()?))
        .collect();
    let table = fs::File::open(dir.join("net").join(if v6 { "tcp6" } else { "tcp" })).ok()?;
    let mut ports = HashSet::new();
    each_row(table, |row| {
        if let Ok(Some(e)) = parse_line(row, v6, Protocol::Tcp)
            && e.local.ip() == ip
            && held.contains(&e.inode)
        {
            ports.insert(e.local.port());
        }
    })
    .ok()?;
    match ports.into_iter().collect::<Vec<_>>()[..] {
        [port] => Some(port),
        _ => None,
    }
}

/// Scans every network namespace reachable through `/proc/<pid>/net` for listening TCP sockets and
/// open UDP sockets.
pub fn scan_listeners() -> Result<Vec<ListeningSocket>, BaselineError> {
    scan_listeners_in(Path::new("/proc"))
}

/// [`scan_listeners`] over a procfs mounted at `proc_root` (tests point it at a fake tree).
pub fn scan_listeners_in(proc_root: &Path) -> Result<Vec<ListeningSocket>, BaselineError> {
    let pids = procfs::pids(proc_root).map_err(|source| BaselineError::Io {
        path: proc_root.display().to_string(),
        source,
    })?;

    // Group processes by network namespace; a namespace's tables are then read once, through the
    // first of its processes that is still there.
    let mut by_netns: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut first_denied: Option<BaselineError> = None;
    for &pid in &pids {
        let path = proc_root.join(pid.to_string()).join("ns/net");
        match fs::read_link(&path) {
            Ok(target) => match target.to_str().and_then(parse_ns_link) {
                Some(ns) => by_netns.entry(ns).or_default().push(pid),
                None => log::warn!(
                    "{}: unexpected link target {}",
                    path.display(),
                    target.display()
                ),
            },
            Err(e) => note_error(&path, e, &mut first_denied),
        }
    }

    let mut sockets: Vec<ListeningSocket> = Vec::new();
    let mut tables_read = 0usize;
    for (&netns, ns_pids) in &by_netns {
        for &pid in ns_pids {
            match read_netns_tables(proc_root, pid) {
                Ok(entries) => {
                    tables_read += 1;
                    sockets.extend(entries.into_iter().map(|(e, protocol, family_v6)| {
                        ListeningSocket {
                            protocol,
                            inode: e.inode,
                            netns,
                            local: e.local,
                            family_v6,
                            uid: e.uid,
                            owners: Vec::new(),
                        }
                    }));
                    break;
                }
                Err(TableError::Gone) => {}
                Err(TableError::Io(path, e)) => note_error(&path, e, &mut first_denied),
            }
        }
    }
    if tables_read == 0 {
        // Nothing could be read at all: report why instead of claiming "no listeners".
        return Err(first_denied.unwrap_or_else(|| BaselineError::Io {
            path: proc_root.display().to_string(),
            source: std::io::Error::new(
                ErrorKind::NotFound,
                "no readable /proc/<pid>/net/tcp table",
            ),
        }));
    }

    let wanted: HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
    let owners = find_owners(proc_root, &pids, &wanted);
    for s in &mut sockets {
        if let Some(o) = owners.get(&s.inode) {
            s.owners = o.clone();
        }
    }
    sockets.sort_by_key(|s| {
        (
            s.netns,
            s.protocol == Protocol::Udp,
            s.family_v6,
            s.local,
            s.inode,
        )
    });
    Ok(sockets)
}

enum TableError {
    /// The process exited while we looked: try another process of the same namespace.
    Gone,
    Io(PathBuf, std::io::Error),
}

/// Reads `tcp`, `tcp6`, `udp` and `udp6` of the namespace `pid` is in. Malformed rows are logged
/// and skipped: one odd line must not hide every other listener.
fn read_netns_tables(
    proc_root: &Path,
    pid: u32,
) -> Result<Vec<(TableEntry, Protocol, bool)>, TableError> {
    let mut out = Vec::new();
    for (name, protocol, v6) in [
        ("tcp", Protocol::Tcp, false),
        ("tcp6", Protocol::Tcp, true),
        ("udp", Protocol::Udp, false),
        ("udp6", Protocol::Udp, true),
    ] {
        let path = proc_root.join(pid.to_string()).join("net").join(name);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            // Without IPv6 support tcp6 and udp6 are simply absent; when the whole process is gone
            // instead, fall through and let another process of the namespace be read.
            Err(e)
                if v6
                    && e.kind() == ErrorKind::NotFound
                    && proc_root.join(pid.to_string()).exists() =>
            {
                continue;
            }
            Err(e) if vanished(&e) => return Err(TableError::Gone),
            Err(e) => return Err(TableError::Io(path, e)),
        };
        let rows = each_row(file, |row| match parse_line(row, v6, protocol) {
            Ok(Some(entry)) => out.push((entry, protocol, v6)),
            Ok(None) => {}
            Err(source) => {
                let err = BaselineError::Parse {
                    path: path.display().to_string(),
                    line: row.into(),
                    source,
                };
                log::warn!("{err}; row skipped");
            }
        });
        match rows {
            Ok(()) => {}
            Err(e) if vanished(&e) => return Err(TableError::Gone),
            Err(e) => return Err(TableError::Io(path, e)),
        }
    }
    Ok(out)
}

/// Calls `f` with every row of a `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` table (the header left out,
/// no newline), a line at a time: a busy host's tables hold every connection (a hundred thousand
/// `TIME_WAIT` rows after a burst of short connections are 15 MB of text), and only the listening
/// and bound rows are wanted.
fn each_row(file: fs::File, mut f: impl FnMut(&str)) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut line = String::new();
    let mut header = true;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if !std::mem::take(&mut header) {
            f(line.trim_end_matches('\n'));
        }
    }
}

/// Maps each wanted socket inode to the sorted thread-group ids holding it.
fn find_owners(proc_root: &Path, pids: &[u32], wanted: &HashSet<u64>) -> HashMap<u64, Vec<u32>> {
    let mut owners: HashMap<u64, Vec<u32>> = HashMap::new();
    if wanted.is_empty() {
        return owners;
    }
    for &pid in pids {
        let dir = proc_root.join(pid.to_string()).join("fd");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                if !vanished(&e) {
                    log::debug!("{}: {e}", dir.display());
                }
                continue;
            }
        };
        for entry in entries.flatten() {
            // A descriptor closed between readdir and readlink is normal.
            let Ok(target) = fs::read_link(entry.path()) else {
                continue;
            };
            let Some(inode) = target.to_str().and_then(parse_socket_link) else {
                continue;
            };
            if wanted.contains(&inode) {
                let list = owners.entry(inode).or_default();
                if !list.contains(&pid) {
                    list.push(pid);
                }
            }
        }
    }
    for list in owners.values_mut() {
        list.sort_unstable();
    }
    owners
}

/// Vanished processes are normal; anything else is remembered (the first permission error is
/// what we report if nothing at all can be read) and logged.
fn note_error(path: &Path, e: std::io::Error, first: &mut Option<BaselineError>) {
    if vanished(&e) {
        return;
    }
    log::debug!("{}: {e}", path.display());
    if first.is_none() {
        *first = Some(BaselineError::Io {
            path: path.display().to_string(),
            source: e,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::symlink, str::FromStr};

    use super::*;

    // Real lines copied from this machine while python3 listened on 0.0.0.0:4444, 127.0.0.1:4446,
    // [::1]:4447, [::]:4448 (dual-stack) and [::ffff:127.0.0.1]:4449, next to an established
    // client connection (state 06 rows must be left out).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 0100007F:115E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19564 1 00000000c93ca3db 100 0 0 10 0                     
   1: 00000000:115C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19563 1 000000008e66403d 100 0 0 10 0                     
   2: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 550 1 00000000508af428 100 0 0 10 0                       
   3: 020200C0:D4FE 507100CB:0050 06 00000000:00000000 03:00000E9C 00000000     0        0 0 3 000000008cbfdaeb                                      
   4: 020200C0:D502 507100CB:0050 06 00000000:00000000 03:00000F6C 00000000     0        0 0 3 000000009363ebd3                                      
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:115F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19565 1 0000000044e1fde5 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1161 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19567 1 0000000070a83f9d 100 0 0 10 0
   2: 00000000000000000000000000000000:1160 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19566 1 00000000b0caa372 100 0 0 10 0
";
    // Real lines from a network namespace created with `ip netns add` whose loopback carried
    // 10.1.2.3 and 2001:db8:1:2::1234, listened on by python3 on ports 4451 and 4452: addresses
    // with four distinct bytes per word catch any byte-order mistake.
    const NS_TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 0302010A:1163 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19621 1 000000003cd61de8 100 0 0 10 0                     
";
    const NS_TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: B80D0120020001000000000034120000:1164 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19622 1 0000000045ed20ec 100 0 0 10 0
";

    // Real lines copied from this machine while python3 had UDP sockets bound to 0.0.0.0:4444,
    // 127.0.0.1:4446, [::1]:4447 and [::]:4448, next to clients: one connected to 127.0.0.1:4444
    // (autobound to 53525), one connected to [::1]:4447 (59350), and one that only sent with
    // sendto (autobound to 0.0.0.0:40086, unconnected).
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
 4511: 0100007F:D115 0100007F:115C 01 00000000:00000000 00:00000000 00000000     0        0 370680 2 00000000727f44a1 0        
 4582: 00000000:115C 00000000:0000 07 00000000:00000340 00:00000000 00000000     0        0 370677 2 00000000b0c7bd43 0        
 4584: 0100007F:115E 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 370678 2 00000000da5dc5f2 0        
 7456: 00000000:9C96 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 370683 2 00000000d9ec21cf 0        
";
    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 4585: 00000000000000000000000001000000:115F 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 370681 2 0000000053e9bf7d 0
 4586: 00000000000000000000000000000000:1160 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 370679 2 0000000044ef6d70 0
10336: 00000000000000000000000001000000:E7D6 00000000000000000000000001000000:115F 01 00000000:00000000 00:00000000 00000000     0        0 370682 2 000000007751da19 0
";
    /// The header of a table without rows.
    const EMPTY: &str = "  sl  local_address rem_address   st\n";

    fn sa(s: &str) -> SocketAddr {
        SocketAddr::from_str(s).expect("test address")
    }

    fn tcp_table(contents: &str, v6: bool) -> Result<Vec<TableEntry>, RowError> {
        parse_table(contents, v6, Protocol::Tcp)
    }

    fn tcp_line(line: &str, v6: bool) -> Result<Option<TableEntry>, RowError> {
        parse_line(line, v6, Protocol::Tcp)
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_real_udp_tables_leaving_out_connected_clients() {
        let entry = |local: &str, inode| TableEntry {
            local: sa(local),
            inode,
            uid: 0,
        };
        assert_eq!(
            parse_table(UDP, false, Protocol::Udp).expect("parse"),
            vec![
                entry("0.0.0.0:4444", 370_677),
                entry("127.0.0.1:4446", 370_678),
                // The unconnected sendto client: as reachable as a bound socket while it lives.
                entry("0.0.0.0:40086", 370_683),
            ]
        );
        assert_eq!(
            parse_table(UDP6, true, Protocol::Udp).expect("parse"),
            vec![entry("[::1]:4447", 370_681), entry("[::]:4448", 370_679)]
        );
        // The same rows read as TCP are not listening (state 07 and 01).
        assert_eq!(tcp_table(UDP, false), Ok(vec![]));
    }

    #[test]
    fn udp_rows_are_checked_like_tcp_ones() {
        let row = |local: &str, rem: &str| {
            format!("1: {local} {rem} 07 00000000:00000000 00:00000000 00000000 33 0 77 2 0 0")
        };
        let udp = |local: &str, rem: &str| parse_line(&row(local, rem), false, Protocol::Udp);
        assert_eq!(
            udp("00000000:0035", "00000000:0000"),
            Ok(Some(TableEntry {
                local: sa("0.0.0.0:53"),
                inode: 77,
                uid: 33
            }))
        );
        // A remote port or a remote address alone makes a connected socket.
        assert_eq!(udp("00000000:0035", "00000000:0035"), Ok(None));
        assert_eq!(udp("00000000:0035", "0100007F:0000"), Ok(None));
        // Not bound to a port.
        assert_eq!(udp("00000000:0000", "00000000:0000"), Ok(None));
        assert_eq!(
            udp("00000000:0035", "0000000:0000"),
            Err(RowError("IPv4 address is not 8 hex digits"))
        );
        assert_eq!(
            udp("00000000:035", "00000000:0000"),
            Err(RowError("port is not 4 hex digits"))
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_real_ipv4_table() {
        let got = tcp_table(TCP, false).expect("parse");
        assert_eq!(
            got,
            vec![
                TableEntry {
                    local: sa("127.0.0.1:4446"),
                    inode: 19564,
                    uid: 0
                },
                TableEntry {
                    local: sa("0.0.0.0:4444"),
                    inode: 19563,
                    uid: 0
                },
                TableEntry {
                    local: sa("0.0.0.0:2024"),
                    inode: 550,
                    uid: 0
                },
            ]
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn a_busy_table_is_read_a_row_at_a_time() {
        // 20,000 TIME_WAIT rows (1.6 MB, many times the read buffer) around one listener.
        let mut lines: Vec<&str> = TCP.lines().collect();
        let time_wait = lines[4];
        let listener = lines[1];
        let mut table = String::from(lines.remove(0));
        table.push('\n');
        for i in 0..20_000 {
            table.push_str(if i == 12_345 { listener } else { time_wait });
            table.push('\n');
        }
        let dir = std::env::temp_dir().join(format!("monitor-busy-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("scratch");
        let path = dir.join("tcp");
        fs::write(&path, &table).expect("write the table");
        let mut rows = 0;
        let mut listening = Vec::new();
        each_row(fs::File::open(&path).expect("open"), |row| {
            rows += 1;
            if let Ok(Some(e)) = parse_line(row, false, Protocol::Tcp) {
                listening.push(e.local);
            }
        })
        .expect("read");
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(rows, 20_000, "every row but the header");
        assert_eq!(listening, [sa("127.0.0.1:4446")]);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_real_ipv6_table() {
        let got = tcp_table(TCP6, true).expect("parse");
        assert_eq!(
            got,
            vec![
                TableEntry {
                    local: sa("[::1]:4447"),
                    inode: 19565,
                    uid: 0
                },
                TableEntry {
                    local: sa("[::ffff:127.0.0.1]:4449"),
                    inode: 19567,
                    uid: 0
                },
                TableEntry {
                    local: sa("[::]:4448"),
                    inode: 19566,
                    uid: 0
                },
            ]
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_addresses_byte_exact() {
        assert_eq!(
            tcp_table(NS_TCP, false).expect("parse"),
            vec![TableEntry {
                local: sa("10.1.2.3:4451"),
                inode: 19621,
                uid: 0
            }]
        );
        assert_eq!(
            tcp_table(NS_TCP6, true).expect("parse"),
            vec![TableEntry {
                local: sa("[2001:db8:1:2::1234]:4452"),
                inode: 19622,
                uid: 0
            }]
        );
    }

    #[test]
    fn reads_the_creator_uid() {
        // www-data (33) listening on 0.0.0.0:8000; a uid column that is not a number is an error.
        let line = "0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 4242 1 0";
        assert_eq!(
            tcp_line(line, false),
            Ok(Some(TableEntry {
                local: sa("0.0.0.0:8000"),
                inode: 4242,
                uid: 33
            }))
        );
        assert_eq!(
            tcp_line(&line.replace("   33 ", "  x33 "), false),
            Err(RowError("uid is not a decimal number"))
        );
    }

    #[test]
    fn rejects_malformed_rows() {
        let row = |local: &str, st: &str, inode: &str| {
            format!(
                "0: {local} 00000000:0000 {st} 00000000:00000000 00:00000000 00000000 0 0 {inode} 1 0"
            )
        };
        let v4 = |local: &str, st: &str, inode: &str| tcp_line(&row(local, st, inode), false);
        let err = |reason| Err(RowError(reason));
        assert_eq!(
            v4("0100007F:115E", "0A", "12").map(|e| e.is_some()),
            Ok(true)
        );
        assert_eq!(
            tcp_line("0: 0100007F:115E 00000000:0000 0A", false),
            err("fewer than 10 columns")
        );
        assert_eq!(v4("0100007F115E", "0A", "12"), err("address without ':'"));
        assert_eq!(
            v4("0100007F:15E", "0A", "12"),
            err("port is not 4 hex digits")
        );
        assert_eq!(
            v4("0100007F:+15E", "0A", "12"),
            err("port is not 4 hex digits")
        );
        assert_eq!(
            v4("0100007:115E", "0A", "12"),
            err("IPv4 address is not 8 hex digits")
        );
        assert_eq!(
            tcp_line(&row("0100007F:115E", "0A", "12"), true),
            err("IPv6 address is not 32 hex digits")
        );
        assert_eq!(v4("0100007G:115E", "0A", "12"), err("address is not hex"));
        // from_str_radix alone would take a sign.
        assert_eq!(v4("+100007F:115E", "0A", "12"), err("address is not hex"));
        assert_eq!(
            v4("0100007\u{e9}:115E", "0A", "12"),
            err("IPv4 address is not 8 hex digits")
        );
        assert_eq!(
            v4("010000\u{e9}:115E", "0A", "12"),
            err("address is not hex")
        );
        assert_eq!(
            v4("0100007F:115E", "0A", "x"),
            err("inode is not a decimal number")
        );
        assert_eq!(
            v4("0100007F:115E", "0A", "+12"),
            err("inode is not a decimal number")
        );
        assert_eq!(v4("0100007F:115E", "ZZ", "12"), err("state is not hex"));
        assert_eq!(v4("0100007F:115E", "+A", "12"), err("state is not hex"));
        // Non-listening rows are not checked further.
        assert_eq!(v4("garbage", "01", "12"), Ok(None));
        assert_eq!(tcp_line("   ", false), Ok(None));
    }

    #[test]
    fn parses_link_targets() {
        assert_eq!(parse_ns_link("net:[4026531833]"), Some(4_026_531_833));
        assert_eq!(parse_ns_link("mnt:[4026531833]"), None);
        assert_eq!(parse_socket_link("socket:[19563]"), Some(19563));
        assert_eq!(parse_socket_link("pipe:[19237]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
    }

    /// A throw-away fake procfs: numeric dirs with `ns/net` and `fd/*` symlinks (whose targets
    /// need not exist: only the link text matters) and `net/{tcp,udp}{,6}` files.
    struct FakeProc(PathBuf);

    impl FakeProc {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("monitor-baseline-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create fake proc");
            Self(dir)
        }

        fn process(&self, pid: u32, netns: u64, tables: Option<(&str, &str)>, sockets: &[u64]) {
            let p = self.0.join(pid.to_string());
            fs::create_dir_all(p.join("ns")).expect("mkdir ns");
            fs::create_dir_all(p.join("fd")).expect("mkdir fd");
            symlink(format!("net:[{netns}]"), p.join("ns/net")).expect("ns link");
            symlink("/dev/null", p.join("fd/0")).expect("fd link");
            symlink("pipe:[7]", p.join("fd/1")).expect("fd link");
            for (i, inode) in sockets.iter().enumerate() {
                symlink(format!("socket:[{inode}]"), p.join(format!("fd/{}", i + 3)))
                    .expect("fd link");
            }
            if let Some((tcp, tcp6)) = tables {
                fs::create_dir_all(p.join("net")).expect("mkdir net");
                fs::write(p.join("net/tcp"), tcp).expect("write tcp");
                fs::write(p.join("net/tcp6"), tcp6).expect("write tcp6");
                self.udp(pid, EMPTY, EMPTY);
            }
        }

        /// Replaces the `udp` and `udp6` tables of `pid`.
        fn udp(&self, pid: u32, udp: &str, udp6: &str) {
            let net = self.0.join(pid.to_string()).join("net");
            fs::write(net.join("udp"), udp).expect("write udp");
            fs::write(net.join("udp6"), udp6).expect("write udp6");
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[cfg(target_endian = "little")]
    #[cfg(target_endian = "little")]
    #[test]
    fn the_port_an_autobound_listener_got() {
        let root = FakeProc::new("port");
        let host = 4_026_531_833;
        root.process(50, host, Some((TCP, TCP6)), &[19563]);
        root.process(52, host, Some((TCP, TCP6)), &[19563, 550]);
        root.process(53, host, Some((TCP, TCP6)), &[19566, 19567]);
        root.process(54, host, Some((TCP, TCP6)), &[]);
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let any6: IpAddr = "::".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(listening_port(&root.0, 50, any4, false), Some(4444));
        // Two listeners on 0.0.0.0: which one is unknown.
        assert_eq!(listening_port(&root.0, 52, any4, false), None);
        // The table of the socket's family, and the exact address.
        assert_eq!(listening_port(&root.0, 53, any6, true), Some(4448));
        assert_eq!(listening_port(&root.0, 53, mapped, true), Some(4449));
        assert_eq!(listening_port(&root.0, 53, any4, false), None);
        // Holds none, or gone.
        assert_eq!(listening_port(&root.0, 54, any4, false), None);
        assert_eq!(listening_port(&root.0, 99, any4, false), None);
    }

    #[test]
    fn scan_joins_owners_across_namespaces() {
        let root = FakeProc::new("scan");
        // pid 1 and 50 share the host netns; pid 50 holds 0.0.0.0:4444 and [::]:4448, and its
        // child 51 inherited 0.0.0.0:4444.
        root.process(1, 4_026_531_833, Some((TCP, TCP6)), &[]);
        root.udp(1, UDP, UDP6);
        // pid 50 also holds the UDP socket on 0.0.0.0:4444 and the connected client.
        root.process(
            50,
            4_026_531_833,
            Some((TCP, TCP6)),
            &[19563, 19566, 99999, 370_677, 370_680],
        );
        root.process(51, 4_026_531_833, Some((TCP, TCP6)), &[19563]);
        // pid 70 lives in a second namespace; pid 60 (host netns) holds the namespaced IPv6
        // listener, so owners are searched across namespaces.
        root.process(70, 4_026_532_177, Some((NS_TCP, NS_TCP6)), &[19621]);
        root.process(60, 4_026_531_833, Some((TCP, TCP6)), &[19622]);
        // Non-numeric entries are ignored; a process that vanished (no ns link) is skipped.
        fs::create_dir_all(root.0.join("self")).expect("mkdir");
        fs::create_dir_all(root.0.join("80")).expect("mkdir");

        let got = scan_listeners_in(&root.0).expect("scan");
        let host = 4_026_531_833;
        let ns = 4_026_532_177;
        let ls = |netns, local: &str, family_v6, inode, owners: &[u32]| ListeningSocket {
            protocol: Protocol::Tcp,
            inode,
            netns,
            local: sa(local),
            family_v6,
            uid: 0,
            owners: owners.to_vec(),
        };
        let udp = |local: &str, family_v6, inode, owners: &[u32]| ListeningSocket {
            protocol: Protocol::Udp,
            ..ls(host, local, family_v6, inode, owners)
        };
        assert_eq!(
            got,
            vec![
                ls(host, "0.0.0.0:2024", false, 550, &[]),
                ls(host, "0.0.0.0:4444", false, 19563, &[50, 51]),
                ls(host, "127.0.0.1:4446", false, 19564, &[]),
                ls(host, "[::]:4448", true, 19566, &[50]),
                ls(host, "[::1]:4447", true, 19565, &[]),
                ls(host, "[::ffff:127.0.0.1]:4449", true, 19567, &[]),
                udp("0.0.0.0:4444", false, 370_677, &[50]),
                udp("0.0.0.0:40086", false, 370_683, &[]),
                udp("127.0.0.1:4446", false, 370_678, &[]),
                udp("[::]:4448", true, 370_679, &[]),
                udp("[::1]:4447", true, 370_681, &[]),
                ls(ns, "10.1.2.3:4451", false, 19621, &[70]),
                ls(ns, "[2001:db8:1:2::1234]:4452", true, 19622, &[60]),
            ]
        );
    }

    #[test]
    fn scan_falls_back_to_another_process_of_the_namespace() {
        let root = FakeProc::new("fallback");
        // pid 5 has the ns link but its net tables are gone (it exited mid-scan): pid 6 of the
        // same namespace is read instead.
        root.process(5, 1, None, &[]);
        root.process(6, 1, Some((NS_TCP, "  sl header\n")), &[19621]);
        let got = scan_listeners_in(&root.0).expect("scan");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].owners, vec![6]);
        assert_eq!(got[0].inode, 19621);
    }

    #[test]
    fn scan_with_nothing_readable_is_an_error() {
        let root = FakeProc::new("empty");
        root.process(5, 1, None, &[]);
        match scan_listeners_in(&root.0) {
            Err(BaselineError::Io { path, .. }) => assert_eq!(path, root.0.display().to_string()),
            other => panic!("expected an Io error, got {other:?}"),
        }
        match scan_listeners_in(&root.0.join("missing")) {
            Err(BaselineError::Io { source, .. }) => assert_eq!(source.kind(), ErrorKind::NotFound),
            other => panic!("expected an Io error, got {other:?}"),
        }
    }

    #[test]
    fn scan_skips_malformed_rows_and_keeps_the_rest() {
        let root = FakeProc::new("malformed");
        let tcp = format!("{NS_TCP}   1: 0302010A:11 00000000:0000 0A 0:0 0:0 0 0 0 7 1\n");
        root.process(9, 2, Some((&tcp, "  sl header\n")), &[]);
        let got = scan_listeners_in(&root.0).expect("scan");
        assert_eq!(got.iter().map(|s| s.inode).collect::<Vec<_>>(), vec![19621]);
    }

    /// The live scan must find a listener this test opens, with this process as the owner.
    #[test]
    fn live_scan_finds_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let got = scan_listeners().expect("scan /proc");
        let me = std::process::id();
        let found = got
            .iter()
            .find(|s| s.local == addr)
            .unwrap_or_else(|| panic!("{addr} not in {got:?}"));
        assert!(!found.family_v6);
        assert_eq!(found.owners, vec![me]);
        assert_eq!(found.protocol, Protocol::Tcp);
    }

    /// The live scan finds a UDP socket this test binds, and leaves out a client connected to it.
    #[test]
    fn live_scan_finds_own_udp_socket_but_not_a_connected_client() {
        let bound = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = bound.local_addr().expect("addr");
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind client");
        client.connect(addr).expect("connect");
        let client_addr = client.local_addr().expect("client addr");
        let got = scan_listeners().expect("scan /proc");
        let found = got
            .iter()
            .find(|s| s.local == addr && s.protocol == Protocol::Udp)
            .unwrap_or_else(|| panic!("{addr} not in {got:?}"));
        assert_eq!(found.owners, vec![std::process::id()]);
        assert!(
            !got.iter().any(|s| s.local == client_addr),
            "the connected client {client_addr} is not an open port: {got:?}"
        );
    }
}
