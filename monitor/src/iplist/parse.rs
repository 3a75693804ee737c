//! The list formats: pure functions from text to entries, every skipped or changed line
//! reported with its number ([`Parsed`]).

use std::{fmt, net::IpAddr, path::Path, str::FromStr};

use crate::netrange::{Cidr, CidrError};

/// Per file, how many bad (or normalised) lines are kept with their text; the rest are counted.
pub const MAX_REPORTED_LINES: usize = 100;
/// How much of a reported line's text is kept, in bytes (cut on a character boundary).
pub const MAX_REPORTED_TEXT: usize = 160;

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
pub(super) fn parse_network(text: &str) -> Result<(Cidr, bool), String> {
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
    pub(super) fn severity(self) -> u8 {
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
pub(super) mod tests {
    use super::*;
    use crate::iplist::database::Enrichment;

    pub(in crate::iplist) fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or_else(|e| panic!("test address {s}: {e}"))
    }

    pub(in crate::iplist) fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("test CIDR {s}: {e}"))
    }

    pub(in crate::iplist) fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| cidr(s)).collect()
    }

    fn shown(issues: &Issues) -> Vec<(usize, &str)> {
        issues
            .shown()
            .iter()
            .map(|i| (i.line, i.text.as_str()))
            .collect()
    }

    /// A small xorshift: deterministic, no dependency.
    pub(in crate::iplist) struct Rng(pub(in crate::iplist) u64);

    impl Rng {
        pub(in crate::iplist) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        pub(in crate::iplist) fn below(&mut self, n: u64) -> u64 {
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

    pub(in crate::iplist) const EXIT_ADDRESSES: &str = "\
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

    #[test]
    fn cut_respects_character_boundaries() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc…");
        assert_eq!(cut("éé", 3), "é…");
        assert_eq!(cut("𝄞", 2), "…");
    }
}
