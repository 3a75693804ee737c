//! Offline IP lists: Tor exits, a reputation file and named block lists, loaded into one
//! longest-prefix-match database that answers "what do we know about this address" on every
//! TCP connect and every SSH login.
//!
//! Three layers, each usable alone, each in its own file:
//! 1. **Parsers** (`parse.rs`: [`parse_plain`], [`parse_tor`], [`parse_reputation_csv`]): pure
//!    functions over text. A bad line never fails the file: it is skipped and reported in
//!    [`Parsed::bad_lines`] with its 1-based line number, so one typo in a 100 000-line feed
//!    costs one entry, not the feed.
//! 2. **The database** (`database.rs`: [`Enrichment`], built by [`EnrichmentBuilder`]):
//!    immutable, `Send + Sync`, meant to sit behind an `Arc` that the caller swaps on reload.
//!    [`Enrichment::lookup`] is one trie walk and allocates nothing. The trie (`prefix-trie`'s
//!    tree bitmap, no path compression) costs about 70 bytes per IPv4 prefix and up to 550 per
//!    long IPv6 prefix; docs/benchmarks.md has the figures.
//! 3. **The files** (`files.rs`: [`IpLists`]): per-file identity and last good content, so a
//!    reload re-reads only what changed and a download that turned into garbage never empties a
//!    list.
//!
//! # Formats
//!
//! | parser | files | lines |
//! |---|---|---|
//! | [`parse_plain`] | `torbulkexitlist`, `FireHOL` `.netset`, Spamhaus DROP text, Feodo and `AbuseIPDB` plaintext | one address or CIDR; `#` or `;` starts a comment anywhere |
//! | [`parse_tor`] | either Tor format, told apart by [`detect_tor_format`] | bulk list as above, or `exit-addresses` records |
//! | [`parse_reputation_csv`] | a local reputation export | `ip_or_cidr,classification[,name[,tags]]` |
//!
//! # Decisions
//!
//! - **Host bits set** (`10.1.2.3/8`): accepted and normalised to the network (`10.0.0.0/8`),
//!   and every such line is reported in [`Parsed::normalised`]. Rejecting it would silently stop
//!   watching the whole block the author meant; widening to the block is what iptables and
//!   ipset do with such a rule, and the report still shows the typo. The policy's own
//!   [`Cidr`] rejects host bits because a person is there to fix the file; a downloaded feed has
//!   nobody to fix it.
//! - **IPv4-mapped IPv6** (`::ffff:a.b.c.d`): looked up as the IPv4 address, like
//!   [`netrange::canonical`]; a list entry written in the mapped form (`::ffff:1.2.3.0/120`) is
//!   stored as IPv4 (`1.2.3.0/24`) so it still matches. NAT64 addresses are left to the caller:
//!   a detection that already passes `netrange::canonical(ip)` gets that too, and the mapped
//!   conversion here is idempotent with it.
//! - **Same prefix twice in the reputation file**: the most severe classification wins
//!   (malicious > suspicious > unknown > benign), so a feed glitch cannot whitelist a bad host.
//! - **Reputation tags** are separated by `|` inside the fourth field (`;` is the field separator
//!   of many spreadsheet CSV dialects and the comment marker of Spamhaus files).
//! - **Report sizes**: each file keeps the first [`MAX_REPORTED_LINES`] bad (and normalised)
//!   lines with their text cut to [`MAX_REPORTED_TEXT`] bytes, and counts all of them, so a
//!   binary file handed over as a list costs a few kilobytes of report, not its size again.
//! - **Files** larger than [`MAX_FILE_BYTES`], or that are not regular files (a FIFO would block
//!   the reload forever), are unreadable. Invalid UTF-8 is replaced (U+FFFD), so it spoils only
//!   the line it is on.
//! - **Reload**: see [`IpLists::reload_changed`]. A file that becomes empty *without* bad lines
//!   is accepted (an empty Tor exit list is plausible); the report carries the previous entry
//!   count so the caller can log the drop.
//!
//! [`Cidr`]: crate::netrange::Cidr
//! [`netrange::canonical`]: crate::netrange::canonical

mod database;
mod files;
mod parse;

pub use database::{Enrichment, EnrichmentBuilder, Hit, Lists, WatchedCounts};
pub use files::{
    FileReport, IpListError, IpLists, IpListsConfig, KeepReason, MAX_FILE_BYTES, NamedList,
    Outcome, ReadError, ReloadReport, Source,
};
pub use parse::{
    Classification, Issues, LineIssue, MAX_REPORTED_LINES, MAX_REPORTED_TEXT, Parsed, Reputation,
    ReputationEntry, TorFormat, detect_tor_format, parse_plain, parse_reputation_csv, parse_tor,
    parse_tor_exit_addresses,
};
