//! Offline IP lists: Tor exits, a reputation file and named block lists, loaded into one
//! longest-prefix-match database that answers "what do we know about this address" on every
//! TCP connect and every SSH login.
//!
//! Three layers, each usable alone:
//! 1. **Parsers** ([`parse_plain`], [`parse_tor`], [`parse_reputation_csv`]): pure functions
//!    over text. A bad line never fails the file: it is skipped and reported in
//!    [`Parsed::bad_lines`] with its 1-based line number, so one typo in a 100 000-line feed
//!    costs one entry, not the feed.
//! 2. **The database** ([`Enrichment`], built by [`EnrichmentBuilder`]): immutable, `Send + Sync`,
//!    meant to sit behind an `Arc` that the caller swaps on reload. [`Enrichment::lookup`] is one
//!    trie walk and allocates nothing. The trie (`prefix-trie`'s tree bitmap, no path
//!    compression) costs about 70 bytes per IPv4 prefix and up to 550 per long IPv6 prefix;
//!    docs/benchmarks.md has the figures.
//! 3. **The files** ([`IpLists`]): per-file identity and last good content, so a reload re-reads
//!    only what changed and a download that turned into garbage never empties a list.
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
//! [`netrange::canonical`]: crate::netrange::canonical

use std::{
    collections::HashMap,
    fmt,
    fs::{self, File},
    hash::Hash,
    io::{self, Read},
    net::{IpAddr, Ipv4Addr},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::joint::JointPrefixMap;

use crate::netrange::{Cidr, CidrError};

/// Per file, how many bad (or normalised) lines are kept with their text; the rest are counted.
pub const MAX_REPORTED_LINES: usize = 100;
/// How much of a reported line's text is kept, in bytes (cut on a character boundary).
pub const MAX_REPORTED_TEXT: usize = 160;
/// Larger files are refused: the biggest public feeds (`FireHOL` level sets, full Tor lists) are a
/// few megabytes, and reading an unbounded file into memory is a denial of service.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Parsed text
// ---------------------------------------------------------------------------------------------

/// One line a parser skipped or changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineIssue {
    /// 1-based.
    pub line: usize,
    /// The line as written, cut to [`MAX_REPORTED_TEXT`] bytes.
    pub text: String,
    pub message: String,
}

impl LineIssue {
    fn new(line: usize, text: &str, message: impl Into<String>) -> Self {
        Self {
            line,
            text: cut(text.trim(), MAX_REPORTED_TEXT),
            message: message.into(),
        }
    }

    /// Displays as `FILE:LINE: MESSAGE: TEXT` (the text in backticks), the policy errors' layout.
    #[must_use]
    pub fn at<'a>(&'a self, path: &'a Path) -> impl fmt::Display + 'a {
        LocatedIssue { path, issue: self }
    }
}

impl fmt::Display for LineIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: `{}`", self.line, self.message, self.text)
    }
}

struct LocatedIssue<'a> {
    path: &'a Path,
    issue: &'a LineIssue,
}

impl fmt::Display for LocatedIssue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let LineIssue {
            line,
            text,
            message,
        } = self.issue;
        write!(f, "{}:{line}: {message}: `{text}`", self.path.display())
    }
}

/// The first [`MAX_REPORTED_LINES`] issues of one kind, and how many there were in all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Issues {
    shown: Vec<LineIssue>,
    total: usize,
}

impl Issues {
    fn push(&mut self, issue: impl FnOnce() -> LineIssue) {
        self.total = self.total.saturating_add(1);
        if self.shown.len() < MAX_REPORTED_LINES {
            self.shown.push(issue());
        }
    }

    /// How many lines had this issue (more than [`Issues::shown`] holds when capped).
    #[must_use]
    pub fn count(&self) -> usize {
        self.total
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The first [`MAX_REPORTED_LINES`] of them, in line order.
    #[must_use]
    pub fn shown(&self) -> &[LineIssue] {
        &self.shown
    }
}

/// What a parser made of a text: the good entries, and the lines it skipped or changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<T> {
    pub entries: Vec<T>,
    /// Lines that were skipped.
    pub bad_lines: Issues,
    /// Lines that were kept after a change (host bits cleared).
    pub normalised: Issues,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            bad_lines: Issues::default(),
            normalised: Issues::default(),
        }
    }
}

impl<T> Parsed<T> {
    fn bad(&mut self, line: usize, text: &str, message: impl Into<String>) {
        self.bad_lines
            .push(|| LineIssue::new(line, text, message.into()));
    }
}

/// Lines numbered from 1, without a leading byte-order mark (Windows editors add one, and it
/// would make the first address unparsable).
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines().enumerate().map(|(i, line)| (i + 1, line))
}

/// Parses an address or CIDR; host bits are cleared and reported through `normalised`.
fn parse_network(text: &str) -> Result<(Cidr, bool), String> {
    match text.parse::<Cidr>() {
        Ok(cidr) => Ok((cidr, false)),
        Err(CidrError::HostBits { suggestion, .. }) => Ok((suggestion, true)),
        Err(e) => Err(e.to_string()),
    }
}

fn push_network(out: &mut Parsed<Cidr>, line: usize, raw: &str, text: &str) {
    match parse_network(text) {
        Ok((cidr, normalised)) => {
            if normalised {
                out.normalised
                    .push(|| LineIssue::new(line, raw, format!("host bits set; using {cidr}")));
            }
            out.entries.push(cidr);
        }
        Err(message) => out.bad(line, raw, message),
    }
}

// ---------------------------------------------------------------------------------------------
// Plain lists
// ---------------------------------------------------------------------------------------------

/// One IPv4 or IPv6 address or CIDR per line (`torbulkexitlist`, `FireHOL` `.netset`, Spamhaus
/// DROP text `1.10.16.0/20 ; SBL256894`, Feodo and `AbuseIPDB` plaintext).
///
/// `#` and `;` start a comment wherever they appear; blank lines and surrounding whitespace are
/// ignored. Host bits are cleared (see the module documentation).
#[must_use]
pub fn parse_plain(text: &str) -> Parsed<Cidr> {
    let mut out = Parsed::default();
    for (line, raw) in numbered_lines(text) {
        let data = raw.find(['#', ';']).map_or(raw, |at| &raw[..at]).trim();
        if !data.is_empty() {
            push_network(&mut out, line, raw, data);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tor
// ---------------------------------------------------------------------------------------------

/// The two shapes a Tor exit list comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TorFormat {
    /// `torbulkexitlist`: one address per line.
    BulkList,
    /// `exit-addresses` (tordnsel exitlist-spec): `ExitNode`/`Published`/`LastStatus`/
    /// `ExitAddress` records.
    ExitAddresses,
}

const TOR_KEYWORDS: [&str; 4] = ["ExitNode", "Published", "LastStatus", "ExitAddress"];

/// `ExitAddresses` when the first line that is neither blank nor a `#` comment starts with one of
/// the record keywords; a bulk list starts with an address. Looking at the first line only means
/// a file cut off after its first record is still read in the right format.
#[must_use]
pub fn detect_tor_format(text: &str) -> TorFormat {
    let first = numbered_lines(text)
        .map(|(_, line)| line.trim())
        .find(|line| !line.is_empty() && !line.starts_with('#'));
    match first.and_then(|line| line.split_ascii_whitespace().next()) {
        Some(word) if TOR_KEYWORDS.contains(&word) => TorFormat::ExitAddresses,
        _ => TorFormat::BulkList,
    }
}

/// A Tor exit list in either format ([`detect_tor_format`]); every entry is one address.
#[must_use]
pub fn parse_tor(text: &str) -> Parsed<Cidr> {
    match detect_tor_format(text) {
        TorFormat::BulkList => parse_plain(text),
        TorFormat::ExitAddresses => parse_tor_exit_addresses(text),
    }
}

/// The `exit-addresses` format: every `ExitAddress <ip> <YYYY-MM-DD> <HH:MM:SS>` line gives one
/// exit, whichever record it sits in (a relay may exit from several addresses). Every other line
/// is ignored, as the spec asks of unknown keywords; an `ExitAddress` line that does not have
/// exactly that shape is a bad line.
#[must_use]
pub fn parse_tor_exit_addresses(text: &str) -> Parsed<Cidr> {
    const SHAPE: &str = "expected `ExitAddress <ip> <YYYY-MM-DD> <HH:MM:SS>`";
    let mut out = Parsed::default();
    for (line, raw) in numbered_lines(text) {
        let mut words = raw.split_ascii_whitespace();
        if words.next() != Some("ExitAddress") {
            continue;
        }
        let (Some(address), Some(date), Some(time), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            out.bad(line, raw, SHAPE);
            continue;
        };
        if !is_date(date) || !is_time(time) {
            out.bad(line, raw, SHAPE);
            continue;
        }
        match address.parse::<IpAddr>() {
            Ok(ip) => match Cidr::new(ip, host_prefix(ip)) {
                Ok(cidr) => out.entries.push(cidr),
                Err(e) => out.bad(line, raw, e.to_string()),
            },
            Err(_) => out.bad(line, raw, format!("`{address}` is not an IP address")),
        }
    }
    out
}

fn host_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `YYYY-MM-DD` by shape; the date itself does not matter to us, only that the line is whole.
fn is_date(s: &str) -> bool {
    digits_with(s, b'-', &[4, 2, 2])
}

/// `HH:MM:SS` by shape.
fn is_time(s: &str) -> bool {
    digits_with(s, b':', &[2, 2, 2])
}

fn digits_with(s: &str, separator: u8, widths: &[usize]) -> bool {
    let parts: Vec<&[u8]> = s.as_bytes().split(|b| *b == separator).collect();
    parts.len() == widths.len()
        && parts
            .iter()
            .zip(widths)
            .all(|(part, width)| part.len() == *width && part.iter().all(u8::is_ascii_digit))
}

// ---------------------------------------------------------------------------------------------
// Reputation CSV
// ---------------------------------------------------------------------------------------------

/// A reputation verdict, in the vocabulary of `GreyNoise` (records print it lowercase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Malicious,
    Suspicious,
    Benign,
    Unknown,
}

impl Classification {
    /// Worth an alert (and a kernel-side watch): malicious or suspicious.
    #[must_use]
    pub fn is_alerting(self) -> bool {
        matches!(self, Self::Malicious | Self::Suspicious)
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malicious => "malicious",
            Self::Suspicious => "suspicious",
            Self::Benign => "benign",
            Self::Unknown => "unknown",
        }
    }

    /// For two verdicts on the same prefix: higher wins. Benign is lowest because it is the only
    /// verdict that can silence an alert.
    fn severity(self) -> u8 {
        match self {
            Self::Malicious => 3,
            Self::Suspicious => 2,
            Self::Unknown => 1,
            Self::Benign => 0,
        }
    }
}

impl FromStr for Classification {
    type Err = String;

    /// Case-insensitive, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        [
            Self::Malicious,
            Self::Suspicious,
            Self::Benign,
            Self::Unknown,
        ]
        .into_iter()
        .find(|c| c.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            format!("`{s}` is not a classification (malicious, suspicious, benign or unknown)")
        })
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the reputation file says about a prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reputation {
    pub classification: Classification,
    /// The actor or service (`Shodan.io`, `Mirai`); `None` when the field is missing or empty.
    pub name: Option<String>,
    pub tags: Vec<String>,
}

/// One line of the reputation file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReputationEntry {
    pub network: Cidr,
    pub reputation: Reputation,
}

/// `ip_or_cidr,classification[,name[,tags]]`, tags separated by `|`.
///
/// - Fields may be double-quoted (`"Shodan, Inc."`, `""` for a quote inside); a quoted field
///   cannot span lines.
/// - Lines starting with `#` are comments; there are no trailing comments (a name may hold `#`).
/// - The first data line is a header, and skipped silently, when its first field is not an
///   address but a column name (letters, digits, `_`, `-`, spaces) *and* its second is not a
///   classification (`ip,classification,name,tags`). A first line like `1.2.3.4/33,malicious`
///   or `<html>,…` is a bad line, not a header.
/// - More than four fields is a bad line: it usually means another CSV (Feodo's, say) was given.
#[must_use]
pub fn parse_reputation_csv(text: &str) -> Parsed<ReputationEntry> {
    const SHAPE: &str = "expected `ip_or_cidr,classification[,name[,tags]]`";
    let mut out = Parsed::default();
    let mut first_data_line = true;
    for (line, raw) in numbered_lines(text) {
        let data = raw.trim();
        if data.is_empty() || data.starts_with('#') {
            continue;
        }
        let maybe_header = std::mem::replace(&mut first_data_line, false);
        let fields = match split_csv_line(data) {
            Ok(fields) => fields,
            Err(message) => {
                out.bad(line, raw, message);
                continue;
            }
        };
        let [address, classification, rest @ ..] = fields.as_slice() else {
            out.bad(line, raw, SHAPE);
            continue;
        };
        let (network, normalised) = match parse_network(address) {
            Ok(parsed) => parsed,
            Err(message) => {
                if !(maybe_header && is_header(address, classification)) {
                    out.bad(line, raw, message);
                }
                continue;
            }
        };
        if rest.len() > 2 {
            out.bad(line, raw, format!("{} fields; {SHAPE}", fields.len()));
            continue;
        }
        let classification = match classification.parse::<Classification>() {
            Ok(c) => c,
            Err(message) => {
                out.bad(line, raw, message);
                continue;
            }
        };
        let name = rest
            .first()
            .map(|name| name.trim())
            .filter(|name| !name.is_empty())
            .map(str::to_owned);
        let tags = rest
            .get(1)
            .map(|tags| {
                tags.split('|')
                    .map(str::trim)
                    .filter(|tag| !tag.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if normalised {
            out.normalised
                .push(|| LineIssue::new(line, raw, format!("host bits set; using {network}")));
        }
        out.entries.push(ReputationEntry {
            network,
            reputation: Reputation {
                classification,
                name,
                tags,
            },
        });
    }
    out
}

/// A header names its columns: a first field of words (`ip`, `IP Address`, `ip_or_cidr`) and a
/// second that is not a verdict. An HTML error page or a binary file's first line is not one, so
/// it stays a bad line and the file still looks like garbage to a reload.
fn is_header(first: &str, second: &str) -> bool {
    !first.is_empty()
        && first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' '))
        && second.parse::<Classification>().is_err()
}

/// Splits one CSV line on commas outside double quotes; unquoted fields are trimmed, quoted ones
/// kept verbatim (`""` is a quote). A quote inside an unquoted field is kept as text, as most
/// spreadsheet exports expect.
fn split_csv_line(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let mut field = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field"),
                    Some('"') if chars.next_if_eq(&'"').is_some() => field.push('"'),
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            fields.push(field);
            match chars.next() {
                None => return Ok(fields),
                Some(',') => {}
                Some(_) => return Err("text after a closing quote"),
            }
        } else {
            let mut more = false;
            for c in chars.by_ref() {
                if c == ',' {
                    more = true;
                    break;
                }
                field.push(c);
            }
            fields.push(field.trim_end().to_owned());
            if !more {
                return Ok(fields);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The database
// ---------------------------------------------------------------------------------------------

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

    /// Lists are reported in the order they are added; names should be unique ([`IpLists`]
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

// ---------------------------------------------------------------------------------------------
// Files and reloads
// ---------------------------------------------------------------------------------------------

/// Which sources to load. Paths and names come from the policy; the caller prefixes errors with
/// the policy key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpListsConfig {
    /// torbulkexitlist or exit-addresses (told apart by content).
    pub tor_exits: Option<PathBuf>,
    /// The reputation CSV.
    pub reputation: Option<PathBuf>,
    /// Plain lists, reported by name in this order.
    pub lists: Vec<NamedList>,
    /// Never loaded from a file: a trusted network must not change because a download did.
    pub trusted: Vec<Cidr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedList {
    pub name: String,
    pub path: PathBuf,
}

/// A file that cannot be used (at load) or a configuration that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum IpListError {
    #[error("{}: cannot read IP list: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("IP list name must not be empty ({})", .path.display())]
    EmptyName { path: PathBuf },
    #[error("IP list name `{name}` is used twice")]
    DuplicateName { name: String },
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a regular file")]
    NotAFile,
    #[error("larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    /// Its size or modification time moved during the read: a writer is mid-way through it.
    #[error("changed while it was being read")]
    ChangedWhileReading,
}

/// Which configured source a file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    TorExits,
    Reputation,
    List(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TorExits => f.write_str("Tor exit list"),
            Self::Reputation => f.write_str("reputation file"),
            Self::List(name) => write!(f, "list `{name}`"),
        }
    }
}

/// What happened to one file in a load or reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Read at start-up.
    Loaded,
    /// Changed, read, and now served.
    Reloaded,
    /// Same identity as last time: not read.
    Unchanged,
    /// Changed, but the new content was refused; the last good copy is still served.
    KeptLastGood(KeepReason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepReason {
    /// Missing, unreadable, too large, or mid-write (the [`ReadError`]'s text).
    Unreadable(String),
    /// No good entry but bad lines, where the last good copy had entries: a truncated download
    /// or the wrong file.
    NoGoodEntries { bad_lines: usize },
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable(e) => write!(f, "cannot read it: {e}"),
            Self::NoGoodEntries { bad_lines } => {
                write!(f, "no good entry and {bad_lines} bad lines (truncated?)")
            }
        }
    }
}

/// One file's line in a [`ReloadReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReport {
    pub source: Source,
    pub path: PathBuf,
    pub outcome: Outcome,
    /// Entries served after this load or reload.
    pub entries: usize,
    /// Entries served before (0 at start-up), so a drop to zero can be logged.
    pub previous_entries: usize,
    /// Of the content read this time (the refused content for [`Outcome::KeptLastGood`]); empty
    /// when the file was not read.
    pub bad_lines: Issues,
    pub normalised: Issues,
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.path.display(), self.source)?;
        match &self.outcome {
            Outcome::Loaded => f.write_str("loaded")?,
            Outcome::Reloaded => f.write_str("reloaded")?,
            Outcome::Unchanged => f.write_str("unchanged")?,
            Outcome::KeptLastGood(reason) => write!(f, "kept the last good copy: {reason}")?,
        }
        write!(
            f,
            ", {} entries ({} before), {} bad lines, {} normalised",
            self.entries,
            self.previous_entries,
            self.bad_lines.count(),
            self.normalised.count()
        )
    }
}

/// The result of [`IpLists::load`] or [`IpLists::reload_changed`], one entry per file in
/// configuration order (Tor, reputation, then the lists).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub files: Vec<FileReport>,
    /// A new [`Enrichment`] was built: swap [`IpLists::database`] in.
    pub rebuilt: bool,
}

/// `(dev, inode, size, mtime)`: a changed file changes one of them, whether it is rewritten in
/// place or replaced by a rename. A same-size rewrite within one timestamp tick of the previous
/// write is missed until the next change; downloaders that write a temporary file and rename it
/// always change the inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl Identity {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// Reads through one open descriptor and compares `fstat` before and after, so a file replaced
/// or rewritten during the read is noticed rather than half-parsed.
fn read_file(path: &Path) -> Result<(Identity, String), ReadError> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile);
    }
    let before = Identity::of(&meta);
    if before.size > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(before.size).unwrap_or(0));
    (&mut file)
        .take(MAX_FILE_BYTES.saturating_add(1))
        .read_to_end(&mut bytes)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    let after = Identity::of(&file.metadata()?);
    if after != before || read != before.size {
        return Err(ReadError::ChangedWhileReading);
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Ok((after, text))
}

#[derive(Debug)]
enum Content {
    Prefixes(Vec<Cidr>),
    Reputation(Vec<ReputationEntry>),
}

impl Content {
    fn len(&self) -> usize {
        match self {
            Self::Prefixes(p) => p.len(),
            Self::Reputation(r) => r.len(),
        }
    }
}

/// The content and the issues of one file's text, parsed as its source's format.
fn parse_source(source: &Source, text: &str) -> (Content, Issues, Issues) {
    match source {
        Source::TorExits | Source::List(_) => {
            let parsed = if *source == Source::TorExits {
                parse_tor(text)
            } else {
                parse_plain(text)
            };
            let content = Content::Prefixes(parsed.entries);
            (content, parsed.bad_lines, parsed.normalised)
        }
        Source::Reputation => {
            let parsed = parse_reputation_csv(text);
            let content = Content::Reputation(parsed.entries);
            (content, parsed.bad_lines, parsed.normalised)
        }
    }
}

#[derive(Debug)]
struct SourceFile {
    source: Source,
    path: PathBuf,
    identity: Identity,
    /// The last good content: what is served.
    content: Content,
}

/// The configured list files, each with its identity and last good content, and the database
/// built from them.
#[derive(Debug)]
pub struct IpLists {
    files: Vec<SourceFile>,
    trusted: Vec<Cidr>,
    database: Arc<Enrichment>,
}

impl IpLists {
    /// Reads every configured file. Bad lines are skipped and reported in the returned report.
    ///
    /// # Errors
    ///
    /// A list name that is empty or used twice, or a file that is missing or unreadable
    /// ([`IpListError::Read`] names it); the caller adds the policy key.
    pub fn load(config: &IpListsConfig) -> Result<(Self, ReloadReport), IpListError> {
        let mut seen: Vec<&str> = Vec::new();
        for list in &config.lists {
            if list.name.trim().is_empty() {
                return Err(IpListError::EmptyName {
                    path: list.path.clone(),
                });
            }
            if seen.contains(&list.name.as_str()) {
                return Err(IpListError::DuplicateName {
                    name: list.name.clone(),
                });
            }
            seen.push(&list.name);
        }
        let sources = config
            .tor_exits
            .iter()
            .map(|p| (Source::TorExits, p))
            .chain(config.reputation.iter().map(|p| (Source::Reputation, p)))
            .chain(
                config
                    .lists
                    .iter()
                    .map(|l| (Source::List(l.name.clone()), &l.path)),
            );
        let mut files = Vec::new();
        let mut reports = Vec::new();
        for (source, path) in sources {
            let (identity, text) = read_file(path).map_err(|source| IpListError::Read {
                path: path.clone(),
                source,
            })?;
            let (content, bad_lines, normalised) = parse_source(&source, &text);
            reports.push(FileReport {
                source: source.clone(),
                path: path.clone(),
                outcome: Outcome::Loaded,
                entries: content.len(),
                previous_entries: 0,
                bad_lines,
                normalised,
            });
            files.push(SourceFile {
                source,
                path: path.clone(),
                identity,
                content,
            });
        }
        let database = Arc::new(build(&files, &config.trusted));
        let lists = Self {
            files,
            trusted: config.trusted.clone(),
            database,
        };
        Ok((
            lists,
            ReloadReport {
                files: reports,
                rebuilt: true,
            },
        ))
    }

    /// Re-stats every file and re-reads only those whose identity changed. A changed file's new
    /// content replaces the old unless
    /// - it cannot be read (gone, unreadable, too large, mid-write), or
    /// - it has no good entry but has bad lines while the last good copy had entries
    ///   (truncated, or garbage);
    ///
    /// then the last good copy stays and the report says why. Such a file is re-read on every
    /// call until it is fixed, so the report keeps saying so. A file that now holds no entries
    /// and no bad lines (comments only, or zero bytes) is accepted as legitimately empty; so is
    /// a file cut short after some good lines, which cannot be told from a list that shrank
    /// (the report's `previous_entries` shows the drop).
    ///
    /// When anything was replaced, a new database is built and `rebuilt` is set; the old
    /// [`Arc`] handed out by [`database`](Self::database) stays valid for whoever holds it.
    pub fn reload_changed(&mut self) -> ReloadReport {
        let mut report = ReloadReport::default();
        for file in &mut self.files {
            let file_report = reload_file(file);
            report.rebuilt |= file_report.outcome == Outcome::Reloaded;
            report.files.push(file_report);
        }
        if report.rebuilt {
            self.database = Arc::new(build(&self.files, &self.trusted));
        }
        report
    }

    /// The current database; cheap to clone into whatever the readers share.
    #[must_use]
    pub fn database(&self) -> Arc<Enrichment> {
        Arc::clone(&self.database)
    }

    /// Every configured file.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }
}

fn reload_file(file: &mut SourceFile) -> FileReport {
    let served = file.content.len();
    let mut report = FileReport {
        source: file.source.clone(),
        path: file.path.clone(),
        outcome: Outcome::Unchanged,
        entries: served,
        previous_entries: served,
        bad_lines: Issues::default(),
        normalised: Issues::default(),
    };
    let kept = |report: FileReport, reason| FileReport {
        outcome: Outcome::KeptLastGood(reason),
        ..report
    };
    let now = match fs::metadata(&file.path) {
        Ok(meta) => Identity::of(&meta),
        Err(e) => return kept(report, KeepReason::Unreadable(e.to_string())),
    };
    if now == file.identity {
        return report;
    }
    let (identity, text) = match read_file(&file.path) {
        Ok(read) => read,
        Err(e) => return kept(report, KeepReason::Unreadable(e.to_string())),
    };
    let (content, bad_lines, normalised) = parse_source(&file.source, &text);
    report.bad_lines = bad_lines;
    report.normalised = normalised;
    if content.len() == 0 && !report.bad_lines.is_empty() && served > 0 {
        let bad = report.bad_lines.count();
        return kept(report, KeepReason::NoGoodEntries { bad_lines: bad });
    }
    report.outcome = Outcome::Reloaded;
    report.entries = content.len();
    file.identity = identity;
    file.content = content;
    report
}

fn build(files: &[SourceFile], trusted: &[Cidr]) -> Enrichment {
    let mut builder = EnrichmentBuilder::new();
    for file in files {
        match (&file.source, &file.content) {
            (Source::TorExits, Content::Prefixes(p)) => {
                builder.tor_exits(p);
            }
            (Source::List(name), Content::Prefixes(p)) => {
                builder.list(name, p);
            }
            (Source::Reputation, Content::Reputation(r)) => {
                builder.reputation(r);
            }
            // parse_source pairs sources and contents; a mismatch cannot be built from.
            _ => {}
        }
    }
    builder.trusted(trusted);
    builder.build()
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use std::{
        fs::FileTimes,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or_else(|e| panic!("test address {s}: {e}"))
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("test CIDR {s}: {e}"))
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| cidr(s)).collect()
    }

    fn shown(issues: &Issues) -> Vec<(usize, &str)> {
        issues
            .shown()
            .iter()
            .map(|i| (i.line, i.text.as_str()))
            .collect()
    }

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

    /// A small xorshift: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    // --- plain lists ------------------------------------------------------------------------

    #[test]
    fn plain_list_comments_cidrs_ipv6_and_bad_lines() {
        let text = "\u{feff}# FireHOL-style header\n\
                    ; Spamhaus DROP header\n\
                    \n\
                    1.2.3.4\n\
                    \t 10.0.0.0/8   \n\
                    1.10.16.0/20 ; SBL256894\n\
                    192.0.2.0/24 # trailing hash comment\n\
                    2001:db8::/32\n\
                    2001:db8::1\n\
                    not-an-address\n\
                    10.0.0.0/33\n\
                    1.2.3.4 5.6.7.8\n\
                    10.1.2.3/8\n";
        let parsed = parse_plain(text);
        assert_eq!(
            parsed.entries,
            cidrs(&[
                "1.2.3.4/32",
                "10.0.0.0/8",
                "1.10.16.0/20",
                "192.0.2.0/24",
                "2001:db8::/32",
                "2001:db8::1/128",
                "10.0.0.0/8",
            ])
        );
        assert_eq!(
            shown(&parsed.bad_lines),
            vec![
                (10, "not-an-address"),
                (11, "10.0.0.0/33"),
                (12, "1.2.3.4 5.6.7.8")
            ]
        );
        assert_eq!(parsed.bad_lines.count(), 3);
        assert!(parsed.bad_lines.shown()[1].message.contains("out of range"));
        assert_eq!(shown(&parsed.normalised), vec![(13, "10.1.2.3/8")]);
        assert_eq!(
            parsed.normalised.shown()[0].message,
            "host bits set; using 10.0.0.0/8"
        );
    }

    #[test]
    fn firehol_netset_and_spamhaus_drop_samples() {
        let netset = "#\n# firehol_level1\n#\n# Source File Date: Mon Jan  1 00:00:00 UTC 2026\n\
                      # Entries: 3\n#\n0.0.0.0/8\n1.10.16.0/20\n1.19.0.0/16\n";
        let parsed = parse_plain(netset);
        assert_eq!(parsed.entries.len(), 3);
        assert!(parsed.bad_lines.is_empty());

        let drop = "; Spamhaus DROP List 2026/01/01 - (c) 2026 The Spamhaus Project\r\n\
                    ; Last-Modified: Thu, 1 Jan 2026 00:00:00 GMT\r\n\
                    1.10.16.0/20 ; SBL256894\r\n\
                    2.56.192.0/22 ; SBL459831\r\n";
        let parsed = parse_plain(drop);
        assert_eq!(parsed.entries, cidrs(&["1.10.16.0/20", "2.56.192.0/22"]));
        assert!(parsed.bad_lines.is_empty());
    }

    #[test]
    fn bad_lines_are_capped_but_counted_and_text_is_cut() {
        let long = "é".repeat(200);
        let mut text = String::new();
        for _ in 0..150 {
            text.push_str(&long);
            text.push('\n');
        }
        text.push_str("8.8.8.8\n");
        let parsed = parse_plain(&text);
        assert_eq!(parsed.entries, cidrs(&["8.8.8.8"]));
        assert_eq!(parsed.bad_lines.count(), 150);
        assert_eq!(parsed.bad_lines.shown().len(), MAX_REPORTED_LINES);
        assert_eq!(parsed.bad_lines.shown()[99].line, 100);
        let text = &parsed.bad_lines.shown()[0].text;
        assert!(text.len() <= MAX_REPORTED_TEXT + '…'.len_utf8());
        assert!(text.ends_with('…'));
    }

    #[test]
    fn issue_display_names_file_and_line() {
        let parsed = parse_plain("1.1.1.1\nbogus\n");
        let issue = &parsed.bad_lines.shown()[0];
        assert_eq!(
            issue.at(Path::new("/etc/monitor/drop.txt")).to_string(),
            "/etc/monitor/drop.txt:2: `bogus` is not an IP address: `bogus`"
        );
    }

    // --- Tor --------------------------------------------------------------------------------

    const EXIT_ADDRESSES: &str = "\
ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E
Published 2026-01-01 10:00:01
LastStatus 2026-01-01 11:02:00
ExitAddress 162.247.74.201 2026-01-01 11:08:32
ExitNode 0098C475875ABC4AA864738B1D1079F711C38287
Published 2026-01-01 09:12:13
LastStatus 2026-01-01 10:00:00
ExitAddress 185.220.101.1 2026-01-01 10:20:00
ExitAddress 185.220.101.2 2026-01-01 10:21:00
ExitAddress 2a0b:f4c2::23 2026-01-01 10:22:00
ExitAddress 185.220.101.3
ExitAddress nonsense 2026-01-01 10:22:00
ExitAddress 185.220.101.4 2026-1-01 10:22:00
SomeFutureKeyword whatever
ExitNode 00A4A8C6C5A4E2C0E6C7C3C5F2D4B1A6E5F7A8B9
Published 2026-01-01 08:00:00
LastStatus 2026-01-01 09:00:00
ExitAddress 204.8.96.1 2026-01-01 09:30:00 extra
ExitAddress 204.8.96.2 2026-01-01 09:31:00
";

    #[test]
    fn tor_exit_addresses_takes_every_exit_address_of_every_record() {
        assert_eq!(detect_tor_format(EXIT_ADDRESSES), TorFormat::ExitAddresses);
        let parsed = parse_tor(EXIT_ADDRESSES);
        assert_eq!(
            parsed.entries,
            cidrs(&[
                "162.247.74.201",
                "185.220.101.1",
                "185.220.101.2",
                "2a0b:f4c2::23",
                "204.8.96.2",
            ])
        );
        assert_eq!(
            parsed
                .bad_lines
                .shown()
                .iter()
                .map(|i| i.line)
                .collect::<Vec<_>>(),
            vec![11, 12, 13, 18]
        );
    }

    #[test]
    fn tor_format_detection() {
        let bulk = "# TorBulkExitList.py header\n# more header\n\n185.220.101.1\n2a0b:f4c2::23\n";
        assert_eq!(detect_tor_format(bulk), TorFormat::BulkList);
        assert_eq!(
            parse_tor(bulk).entries,
            cidrs(&["185.220.101.1", "2a0b:f4c2::23"])
        );
        // Comments and blank lines before the first record; a file cut after its first record.
        let cut = "# fetched 2026-01-01\n\n  ExitNode ABC\nPublished 2026-01-01 10:00:01\n\
                   ExitAddress 1.2.3.4 2026-01-01 11:08:32\n";
        assert_eq!(detect_tor_format(cut), TorFormat::ExitAddresses);
        assert_eq!(parse_tor(cut).entries, cidrs(&["1.2.3.4"]));
        // A file starting mid-record is still recognised.
        assert_eq!(
            detect_tor_format("ExitAddress 1.2.3.4 2026-01-01 11:08:32\n"),
            TorFormat::ExitAddresses
        );
        assert_eq!(detect_tor_format(""), TorFormat::BulkList);
        // Garbage is read as a bulk list, so every line of it is a bad line.
        let garbage = parse_tor("<html>\n<body>503</body>\n");
        assert!(garbage.entries.is_empty());
        assert_eq!(garbage.bad_lines.count(), 2);
    }

    // --- reputation CSV ---------------------------------------------------------------------

    #[test]
    fn reputation_csv_header_quotes_tags_and_bad_lines() {
        let text = "ip,classification,name,tags\n\
                    # a comment\n\
                    1.2.3.4,malicious,Mirai,botnet|ssh bruteforcer\n\
                    \"10.0.0.0/8\" , BENIGN , \"Corp, Inc. \"\"HQ\"\"\" , internal\n\
                    2001:db8::/32,Suspicious\n\
                    5.6.7.8,unknown,,\n\
                    5.6.7.9,evil\n\
                    5.6.7.10\n\
                    5.6.7.11,malicious,a,b,c\n\
                    \"5.6.7.12,malicious\n\
                    \"5.6.7.13\"x,malicious\n\
                    5.6.7.14/24,malicious,host bits\n";
        let parsed = parse_reputation_csv(text);
        let got: Vec<(String, Classification, Option<&str>, Vec<&str>)> = parsed
            .entries
            .iter()
            .map(|e| {
                (
                    e.network.to_string(),
                    e.reputation.classification,
                    e.reputation.name.as_deref(),
                    e.reputation.tags.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "1.2.3.4/32".to_owned(),
                    Classification::Malicious,
                    Some("Mirai"),
                    vec!["botnet", "ssh bruteforcer"]
                ),
                (
                    "10.0.0.0/8".to_owned(),
                    Classification::Benign,
                    Some("Corp, Inc. \"HQ\""),
                    vec!["internal"]
                ),
                (
                    "2001:db8::/32".to_owned(),
                    Classification::Suspicious,
                    None,
                    vec![]
                ),
                (
                    "5.6.7.8/32".to_owned(),
                    Classification::Unknown,
                    None,
                    vec![]
                ),
                (
                    "5.6.7.0/24".to_owned(),
                    Classification::Malicious,
                    Some("host bits"),
                    vec![]
                ),
            ]
        );
        let bad: Vec<(usize, &str)> = parsed
            .bad_lines
            .shown()
            .iter()
            .map(|i| (i.line, i.message.as_str()))
            .collect();
        assert_eq!(bad.len(), 5, "{bad:?}");
        assert_eq!(bad[0].0, 7);
        assert!(bad[0].1.contains("not a classification"));
        assert_eq!(bad[1].0, 8);
        assert!(bad[1].1.starts_with("expected"));
        assert_eq!(
            bad[2],
            (
                9,
                "5 fields; expected `ip_or_cidr,classification[,name[,tags]]`"
            )
        );
        assert_eq!(bad[3], (10, "unterminated quoted field"));
        assert_eq!(bad[4], (11, "text after a closing quote"));
        assert_eq!(
            shown(&parsed.normalised),
            vec![(12, "5.6.7.14/24,malicious,host bits")]
        );
    }

    #[test]
    fn reputation_csv_header_only_on_the_first_data_line() {
        // No header: the first line is data.
        let parsed = parse_reputation_csv("1.2.3.4,malicious\n");
        assert_eq!(parsed.entries.len(), 1);
        // A bad first address with a valid classification is a bad line, not a header.
        let parsed = parse_reputation_csv("1.2.3.4/33,malicious\n5.6.7.8,benign\n");
        assert_eq!(parsed.entries.len(), 1);
        assert_eq!(parsed.bad_lines.shown()[0].line, 1);
        // Comments before the header do not make it the second line.
        let parsed = parse_reputation_csv("# export\n\naddress,verdict\n1.1.1.1,benign\n");
        assert_eq!(parsed.entries.len(), 1);
        assert!(parsed.bad_lines.is_empty());
        // Not column names: a bad line, so a reload still sees garbage.
        let parsed = parse_reputation_csv("<html><body>Error, try later</body></html>\n");
        assert_eq!(parsed.bad_lines.count(), 1);
        let parsed = parse_reputation_csv("IP Address,Verdict,Name\n1.1.1.1,benign\n");
        assert!(parsed.bad_lines.is_empty());
        // A header-like line later on is a bad line.
        let parsed = parse_reputation_csv("1.1.1.1,benign\nip,classification\n");
        assert_eq!(parsed.bad_lines.count(), 1);
        assert_eq!(parsed.bad_lines.shown()[0].line, 2);
    }

    #[test]
    fn csv_splitter() {
        let split = |s: &str| split_csv_line(s);
        assert_eq!(
            split("a,b , c"),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            split("a,,"),
            Ok(vec!["a".into(), String::new(), String::new()])
        );
        assert_eq!(split("\" a, b \",c"), Ok(vec![" a, b ".into(), "c".into()]));
        assert_eq!(split("\"\"\"\""), Ok(vec!["\"".into()]));
        assert_eq!(split("a\"b,c"), Ok(vec!["a\"b".into(), "c".into()]));
        assert_eq!(split("\"a"), Err("unterminated quoted field"));
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_text() {
        const ALPHABET: &[&str] = &[
            "1",
            "9",
            ".",
            ":",
            "/",
            ",",
            ";",
            "#",
            "\"",
            " ",
            "\t",
            "\n",
            "\r\n",
            "a",
            "f",
            "é",
            "€",
            "𝄞",
            "\u{feff}",
            "ExitAddress ",
            "ExitNode ",
            "::ffff:",
            "255",
            "0",
            "2026-01-01",
            "12:00:00",
            "malicious",
            "|",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let len = rng.below(40);
            let text: String = (0..len)
                .map(|_| ALPHABET[usize::try_from(rng.below(ALPHABET.len() as u64)).unwrap_or(0)])
                .collect();
            let plain = parse_plain(&text);
            let tor = parse_tor(&text);
            let csv = parse_reputation_csv(&text);
            let lines = text.lines().count();
            for issues in [&plain.bad_lines, &tor.bad_lines, &csv.bad_lines] {
                assert!(
                    issues
                        .shown()
                        .iter()
                        .all(|i| i.line >= 1 && i.line <= lines)
                );
            }
            let mut builder = Enrichment::builder();
            builder
                .tor_exits(&tor.entries)
                .list("plain", &plain.entries)
                .reputation(&csv.entries);
            let db = builder.build();
            for entry in &plain.entries {
                assert!(
                    db.lookup(entry.network()).lists.contains("plain"),
                    "{text:?}"
                );
            }
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

    // --- files and reloads ------------------------------------------------------------------

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("monitor-iplist-{}-{tag}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            Self(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn outcome_of<'a>(report: &'a ReloadReport, source: &Source) -> &'a FileReport {
        report
            .files
            .iter()
            .find(|f| f.source == *source)
            .unwrap_or_else(|| panic!("no report for {source}"))
    }

    #[test]
    fn load_reads_every_source_and_reports_bad_lines() {
        let dir = TempDir::new("load");
        let tor = dir.write("tor", EXIT_ADDRESSES);
        let reputation = dir.write("rep.csv", "ip,classification\n9.9.9.9,malicious\noops\n");
        let drop = dir.write("drop.txt", "; DROP\n1.10.16.0/20 ; SBL1\n10.1.2.3/8\n");
        let config = IpListsConfig {
            tor_exits: Some(tor.clone()),
            reputation: Some(reputation.clone()),
            lists: vec![NamedList {
                name: "spamhaus_drop".into(),
                path: drop.clone(),
            }],
            trusted: cidrs(&["192.168.0.0/16"]),
        };
        let (lists, report) = IpLists::load(&config).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.rebuilt);
        let files: Vec<(&Source, &Outcome, usize, usize)> = report
            .files
            .iter()
            .map(|f| (&f.source, &f.outcome, f.entries, f.bad_lines.count()))
            .collect();
        let drop_source = Source::List("spamhaus_drop".into());
        assert_eq!(
            files,
            vec![
                (&Source::TorExits, &Outcome::Loaded, 5, 4),
                (&Source::Reputation, &Outcome::Loaded, 1, 1),
                (&drop_source, &Outcome::Loaded, 2, 0),
            ]
        );
        let rep_report = outcome_of(&report, &Source::Reputation);
        assert_eq!(
            rep_report.bad_lines.shown()[0]
                .at(&rep_report.path)
                .to_string(),
            format!(
                "{}:3: expected `ip_or_cidr,classification[,name[,tags]]`: `oops`",
                reputation.display()
            )
        );
        assert_eq!(outcome_of(&report, &drop_source).normalised.count(), 1);
        assert_eq!(
            outcome_of(&report, &drop_source).to_string(),
            format!(
                "{}: list `spamhaus_drop`: loaded, 2 entries (0 before), 0 bad lines, 1 normalised",
                drop.display()
            )
        );

        let db = lists.database();
        assert!(db.lookup(ip("185.220.101.2")).tor_exit);
        assert!(db.lookup(ip("9.9.9.9")).is_watched());
        assert_eq!(
            db.lookup(ip("10.200.0.1")).lists.to_vec(),
            vec!["spamhaus_drop"]
        );
        assert!(db.lookup(ip("192.168.1.1")).trusted);
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = TempDir::new("errors");
        let missing = dir.0.join("missing.txt");
        let config = IpListsConfig {
            lists: vec![NamedList {
                name: "gone".into(),
                path: missing.clone(),
            }],
            ..IpListsConfig::default()
        };
        let err = IpLists::load(&config).expect_err("missing file");
        assert!(matches!(&err, IpListError::Read { path, .. } if *path == missing));
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read IP list: ", missing.display())),
            "{err}"
        );

        let config = IpListsConfig {
            tor_exits: Some(dir.0.clone()),
            ..IpListsConfig::default()
        };
        let err = IpLists::load(&config).expect_err("a directory");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: cannot read IP list: not a regular file",
                dir.0.display()
            )
        );

        let a = dir.write("a", "1.1.1.1\n");
        let twice = IpListsConfig {
            lists: vec![
                NamedList {
                    name: "x".into(),
                    path: a.clone(),
                },
                NamedList {
                    name: "x".into(),
                    path: a.clone(),
                },
            ],
            ..IpListsConfig::default()
        };
        assert!(matches!(
            IpLists::load(&twice),
            Err(IpListError::DuplicateName { name }) if name == "x"
        ));
        let unnamed = IpListsConfig {
            lists: vec![NamedList {
                name: " ".into(),
                path: a,
            }],
            ..IpListsConfig::default()
        };
        assert!(matches!(
            IpLists::load(&unnamed),
            Err(IpListError::EmptyName { .. })
        ));
    }

    #[test]
    fn reload_keeps_the_last_good_copy_of_broken_files() {
        let dir = TempDir::new("reload");
        let path = dir.write("drop.txt", "1.10.16.0/20\n2.56.192.0/22\n");
        let source = Source::List("drop".into());
        let config = IpListsConfig {
            lists: vec![NamedList {
                name: "drop".into(),
                path: path.clone(),
            }],
            ..IpListsConfig::default()
        };
        let (mut lists, _) = IpLists::load(&config).unwrap_or_else(|e| panic!("{e}"));
        let first = lists.database();

        // Nothing changed: nothing read, nothing rebuilt, same database.
        let report = lists.reload_changed();
        assert_eq!(outcome_of(&report, &source).outcome, Outcome::Unchanged);
        assert_eq!(outcome_of(&report, &source).entries, 2);
        assert!(!report.rebuilt);
        assert!(Arc::ptr_eq(&first, &lists.database()));

        // A truncated download / an HTML error page: kept, with the reason.
        dir.write("drop.txt", "<html><body>502 Bad Gateway</body></html>\n");
        let report = lists.reload_changed();
        let file = outcome_of(&report, &source);
        assert_eq!(
            file.outcome,
            Outcome::KeptLastGood(KeepReason::NoGoodEntries { bad_lines: 1 })
        );
        assert_eq!((file.entries, file.bad_lines.count()), (2, 1));
        assert!(
            file.to_string()
                .contains("kept the last good copy: no good entry")
        );
        assert!(!report.rebuilt);
        assert!(
            lists
                .database()
                .lookup(ip("1.10.16.1"))
                .lists
                .contains("drop")
        );
        // Still broken: still reported, not silently accepted on the next pass.
        let report = lists.reload_changed();
        assert!(matches!(
            outcome_of(&report, &source).outcome,
            Outcome::KeptLastGood(KeepReason::NoGoodEntries { .. })
        ));

        // Valid again: reloaded, and a bad line among good ones is just skipped.
        dir.write("drop.txt", "; new\n5.6.7.0/24\nbogus\n");
        let report = lists.reload_changed();
        let file = outcome_of(&report, &source);
        assert_eq!(file.outcome, Outcome::Reloaded);
        assert_eq!(
            (file.entries, file.previous_entries, file.bad_lines.count()),
            (1, 2, 1)
        );
        assert!(report.rebuilt);
        let db = lists.database();
        assert!(!Arc::ptr_eq(&first, &db));
        assert!(db.lookup(ip("5.6.7.8")).lists.contains("drop"));
        assert!(db.lookup(ip("1.10.16.1")).lists.is_empty());
        // The old database is untouched for whoever still holds it.
        assert!(first.lookup(ip("1.10.16.1")).lists.contains("drop"));

        // Deleted: kept, with the reason.
        fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let report = lists.reload_changed();
        let file = outcome_of(&report, &source);
        assert!(
            matches!(&file.outcome, Outcome::KeptLastGood(KeepReason::Unreadable(e)) if e.contains("No such file")),
            "{file}"
        );
        assert_eq!(file.entries, 1);
        assert!(
            lists
                .database()
                .lookup(ip("5.6.7.8"))
                .lists
                .contains("drop")
        );

        // Back, legitimately empty (comments only): accepted.
        dir.write("drop.txt", "# no entries today\n");
        let report = lists.reload_changed();
        let file = outcome_of(&report, &source);
        assert_eq!(file.outcome, Outcome::Reloaded);
        assert_eq!((file.entries, file.previous_entries), (0, 1));
        assert!(lists.database().lookup(ip("5.6.7.8")).lists.is_empty());

        // Garbage after an empty copy replaces nothing worth keeping: accepted, bad lines shown.
        dir.write("drop.txt", "garbage\n");
        let report = lists.reload_changed();
        assert_eq!(outcome_of(&report, &source).outcome, Outcome::Reloaded);
        assert_eq!(outcome_of(&report, &source).bad_lines.count(), 1);
    }

    #[test]
    fn reload_rereads_only_changed_files() {
        let dir = TempDir::new("only-changed");
        let tor = dir.write("tor", "185.220.101.1\n");
        let list = dir.write("list", "1.1.1.1\n");
        let config = IpListsConfig {
            tor_exits: Some(tor.clone()),
            lists: vec![NamedList {
                name: "l".into(),
                path: list.clone(),
            }],
            ..IpListsConfig::default()
        };
        let (mut lists, _) = IpLists::load(&config).unwrap_or_else(|e| panic!("{e}"));

        // Same size, different content, modification time put back: the identity is unchanged,
        // so the file must not be read (the new address must not appear).
        let mtime = fs::metadata(&list)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{e}"));
        fs::write(&list, "2.2.2.2\n").unwrap_or_else(|e| panic!("{e}"));
        File::options()
            .write(true)
            .open(&list)
            .and_then(|f| f.set_times(FileTimes::new().set_modified(mtime)))
            .unwrap_or_else(|e| panic!("{e}"));
        dir.write("tor", "185.220.101.1\n185.220.101.2\n");

        let report = lists.reload_changed();
        assert_eq!(
            outcome_of(&report, &Source::TorExits).outcome,
            Outcome::Reloaded
        );
        let list_report = outcome_of(&report, &Source::List("l".into()));
        assert_eq!(list_report.outcome, Outcome::Unchanged);
        assert!(list_report.bad_lines.is_empty());
        let db = lists.database();
        assert!(db.lookup(ip("185.220.101.2")).tor_exit);
        assert!(db.lookup(ip("1.1.1.1")).lists.contains("l"));
        assert!(db.lookup(ip("2.2.2.2")).lists.is_empty());
    }

    #[test]
    fn reload_of_a_reputation_file_and_a_tor_file_turned_to_exit_addresses() {
        let dir = TempDir::new("formats");
        let tor = dir.write("tor", "192.42.116.16\n");
        let reputation = dir.write("rep.csv", "9.9.9.9,malicious,x\n");
        let config = IpListsConfig {
            tor_exits: Some(tor),
            reputation: Some(reputation),
            ..IpListsConfig::default()
        };
        let (mut lists, _) = IpLists::load(&config).unwrap_or_else(|e| panic!("{e}"));
        dir.write("tor", EXIT_ADDRESSES);
        dir.write("rep.csv", "ip,classification\n9.9.9.9,benign,y\n");
        let report = lists.reload_changed();
        assert!(report.files.iter().all(|f| f.outcome == Outcome::Reloaded));
        let db = lists.database();
        assert!(db.lookup(ip("204.8.96.2")).tor_exit);
        assert!(!db.lookup(ip("192.42.116.16")).tor_exit);
        assert_eq!(
            db.lookup(ip("9.9.9.9"))
                .reputation
                .map(|r| r.classification),
            Some(Classification::Benign)
        );
        // A reputation file turned to garbage keeps the malicious-free copy it had.
        dir.write("rep.csv", "\u{0}\u{1}\u{2}\n\u{ff}\n");
        let report = lists.reload_changed();
        assert!(matches!(
            outcome_of(&report, &Source::Reputation).outcome,
            Outcome::KeptLastGood(KeepReason::NoGoodEntries { bad_lines: 2 })
        ));
    }

    #[test]
    fn invalid_utf8_spoils_only_its_line() {
        let dir = TempDir::new("utf8");
        let path = dir.0.join("list");
        fs::write(&path, b"# caf\xe9\n1.1.1.1\n2.2.2.\xff\n3.3.3.3\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let config = IpListsConfig {
            lists: vec![NamedList {
                name: "l".into(),
                path,
            }],
            ..IpListsConfig::default()
        };
        let (_, report) = IpLists::load(&config).unwrap_or_else(|e| panic!("{e}"));
        let file = &report.files[0];
        assert_eq!(file.entries, 2);
        assert_eq!(file.bad_lines.shown()[0].line, 3);
    }

    #[test]
    fn cut_respects_character_boundaries() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc…");
        assert_eq!(cut("éé", 3), "é…");
        assert_eq!(cut("𝄞", 2), "…");
    }
}
