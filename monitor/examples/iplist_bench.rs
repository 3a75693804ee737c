//! Build time, memory and lookup cost of the IP-list database at a million prefixes.
//!
//! `cargo run --release -p monitor --example iplist_bench [PREFIXES]` (a million by default; `cargo
//! xtask bench` runs it, and its smoke mode with a few thousand); docs/benchmarks.md records a run.
//!
//! The prefixes are random but deterministic (xorshift, fixed seed), half IPv4 (/8–/32) and half
//! IPv6 (/16–/128). Each prefix length is √2 times as likely as the one before it, so most
//! entries are hosts and a few dozen are /8s, as in real feeds; uniform lengths would put
//! thousands of /8s in and leave no IPv4 address outside them. They are dealt round-robin to a
//! Tor list, a reputation file and six named lists. Memory is counted two ways: the bytes the
//! database holds on the heap (a counting global allocator) and the growth of resident memory
//! (`/proc/self/statm`).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    fmt::Write as _,
    hint::black_box,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use monitor::{
    iplist::{Classification, Enrichment, Reputation, ReputationEntry, parse_plain},
    netrange::Cidr,
};

const PREFIXES: usize = 1_000_000;
const LOOKUPS: usize = 1_000_000;
const PASSES: usize = 5;
const LISTS: usize = 6;

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE_BYTES.fetch_add(by, Ordering::Relaxed) + by;
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are only
// bookkeeping on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        grew(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn next_u128(&mut self) -> u128 {
        u128::from(self.next()) << 64 | u128::from(self.next())
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    /// A length in `min..=max`, each √2 times as likely as the one before.
    fn prefix_len(&mut self, min: u8, max: u8) -> u8 {
        let span = f64::from(max - min);
        // Inverse transform of a density growing like 2^(x/2) on 0..=span+1; u in [0, 1).
        let u = f64::from(u32::try_from(self.next() >> 32).unwrap_or(0)) / f64::from(u32::MAX);
        let total = 2f64.powf(f64::midpoint(span, 1.0)) - 1.0;
        let x = 2.0 * (1.0 + u * total).log2();
        let offset = x.floor().clamp(0.0, span);
        // `offset` is a whole number within 0..=span, so it fits a u8.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped"
        )]
        let offset = offset as u8;
        min + offset
    }

    fn cidr(&mut self) -> Cidr {
        let (network, len, bits) = if self.next() & 1 == 0 {
            let len = self.prefix_len(8, 32);
            #[expect(clippy::cast_possible_truncation, reason = "taking the low 32 bits")]
            let addr = self.next() as u32;
            (IpAddr::V4(Ipv4Addr::from_bits(addr)), len, 32)
        } else {
            let len = self.prefix_len(16, 128);
            (IpAddr::V6(Ipv6Addr::from_bits(self.next_u128())), len, 128)
        };
        let network = mask(network, len, bits);
        Cidr::new(network, len).unwrap_or_else(|e| panic!("generated an invalid prefix: {e}"))
    }
}

fn mask(ip: IpAddr, len: u8, bits: u32) -> IpAddr {
    let host_bits = bits - u32::from(len);
    match ip {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(
            a.to_bits() & u32::MAX.checked_shl(host_bits).unwrap_or(0),
        )),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(
            a.to_bits() & u128::MAX.checked_shl(host_bits).unwrap_or(0),
        )),
    }
}

/// A random address inside `cidr`.
fn inside(cidr: Cidr, rng: &mut XorShift) -> IpAddr {
    let len = u32::from(cidr.prefix());
    match cidr.network() {
        IpAddr::V4(a) => {
            #[expect(clippy::cast_possible_truncation, reason = "taking the low 32 bits")]
            let host = (rng.next() as u32).checked_shr(len).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() | host))
        }
        IpAddr::V6(a) => {
            let host = rng.next_u128().checked_shr(len).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() | host))
        }
    }
}

fn random_address(v6: bool, rng: &mut XorShift) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from_bits(rng.next_u128()))
    } else {
        #[expect(clippy::cast_possible_truncation, reason = "taking the low 32 bits")]
        IpAddr::V4(Ipv4Addr::from_bits(rng.next() as u32))
    }
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

fn mib(bytes: u64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let bytes = bytes as f64;
    bytes / (1024.0 * 1024.0)
}

fn ns_per_op(elapsed: Duration, ops: usize) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let ops = ops as f64;
    elapsed.as_secs_f64() * 1e9 / ops
}

/// Median over `PASSES` runs over `addresses`, in ns per lookup, the hits seen, and how many
/// allocations the lookups made.
fn time_lookups(db: &Enrichment, addresses: &[IpAddr]) -> (f64, usize, usize) {
    let mut runs = [0f64; PASSES];
    let mut hits = 0;
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    for run in &mut runs {
        hits = 0;
        let start = Instant::now();
        for addr in addresses {
            let hit = db.lookup(black_box(*addr));
            hits += usize::from(!black_box(hit).is_empty());
        }
        *run = ns_per_op(start.elapsed(), addresses.len());
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    runs.sort_by(f64::total_cmp);
    (runs[PASSES / 2], hits, allocations)
}

/// The prefixes dealt out: 1/8 Tor, 1/8 reputation (16 actors × 4 verdicts), the rest to six
/// lists.
struct Sources {
    tor: Vec<Cidr>,
    reputation: Vec<ReputationEntry>,
    lists: Vec<(String, Vec<Cidr>)>,
}

impl Sources {
    fn deal<'a>(prefixes: impl Iterator<Item = &'a Cidr>) -> Self {
        const CLASSES: [Classification; 4] = [
            Classification::Malicious,
            Classification::Suspicious,
            Classification::Benign,
            Classification::Unknown,
        ];
        let mut sources = Self {
            tor: Vec::new(),
            reputation: Vec::new(),
            lists: (0..LISTS)
                .map(|i| (format!("list{i}"), Vec::new()))
                .collect(),
        };
        for (i, cidr) in prefixes.enumerate() {
            match i % 8 {
                0 => sources.tor.push(*cidr),
                1 => sources.reputation.push(ReputationEntry {
                    network: *cidr,
                    reputation: Reputation {
                        classification: CLASSES[(i / 8) % 4],
                        name: Some(format!("actor{}", (i / 8) % 16)),
                        tags: vec!["scanner".to_owned()],
                    },
                }),
                n => sources.lists[n - 2].1.push(*cidr),
            }
        }
        sources
    }
}

struct Built {
    db: Enrichment,
    time: Duration,
    heap: usize,
    peak: usize,
    resident: u64,
}

fn build(sources: &Sources) -> Built {
    let rss_before = resident_bytes();
    let live_before = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(live_before, Ordering::Relaxed);
    let start = Instant::now();
    let mut builder = Enrichment::builder();
    builder
        .tor_exits(&sources.tor)
        .reputation(&sources.reputation);
    for (name, entries) in &sources.lists {
        builder.list(name, entries);
    }
    let db = builder.build();
    let time = start.elapsed();
    Built {
        db,
        time,
        heap: LIVE_BYTES.load(Ordering::Relaxed) - live_before,
        peak: PEAK_BYTES.load(Ordering::Relaxed) - live_before,
        resident: resident_bytes().saturating_sub(rss_before),
    }
}

/// Resident growth is shown for the first build only: later builds reuse pages earlier ones freed.
fn memory_line(label: &str, built: &Built, show_resident: bool) {
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let per_prefix = built.heap as f64 / built.db.len().max(1) as f64;
    let resident = if show_resident {
        format!(", resident +{:.1} MiB", mib(built.resident))
    } else {
        String::new()
    };
    println!(
        "{label}: {} prefixes, build {:.0} ms, heap {:.1} MiB ({per_prefix:.0} B/prefix), peak while building +{:.1} MiB{resident}",
        built.db.len(),
        built.time.as_secs_f64() * 1e3,
        mib(built.heap as u64),
        mib(built.peak as u64),
    );
}

/// Reload cost: the six lists as one plain text, parsed.
fn parse_line(sources: &Sources) {
    let mut text = String::new();
    for cidr in sources.lists.iter().flat_map(|(_, entries)| entries) {
        let _ = writeln!(text, "{cidr}");
    }
    let start = Instant::now();
    let parsed = parse_plain(&text);
    let elapsed = start.elapsed();
    assert_eq!(parsed.bad_lines.count(), 0);
    println!(
        "parse: {} plain-list lines ({:.1} MiB) in {:.0} ms",
        parsed.entries.len(),
        mib(text.len() as u64),
        elapsed.as_secs_f64() * 1e3
    );
}

fn lookup_lines(db: &Enrichment, prefixes: &[Cidr], rng: &mut XorShift) {
    let lookups = LOOKUPS.min(prefixes.len());
    let half = lookups / 2;
    let (v4, v6): (Vec<Cidr>, Vec<Cidr>) = prefixes.iter().partition(|c| c.network().is_ipv4());
    let hits = |family: &[Cidr], rng: &mut XorShift| -> Vec<IpAddr> {
        (0..half)
            .map(|_| inside(family[rng.below(family.len())], rng))
            .collect()
    };
    let misses = |v6: bool, rng: &mut XorShift| -> Vec<IpAddr> {
        let mut found = Vec::with_capacity(half);
        while found.len() < half {
            let addr = random_address(v6, rng);
            if db.lookup(addr).is_empty() {
                found.push(addr);
            }
        }
        found
    };
    let cases = [
        ("hit", "IPv4", hits(&v4, rng), half),
        ("hit", "IPv6", hits(&v6, rng), half),
        ("miss", "IPv4", misses(false, rng), 0),
        ("miss", "IPv6", misses(true, rng), 0),
    ];
    let mut allocations = 0;
    let mut mean = [0f64; 2];
    for (kind, family, addresses, expected_hits) in &cases {
        let (ns, hits, allocated) = time_lookups(db, addresses);
        assert_eq!(hits, *expected_hits, "{kind} {family}");
        allocations += allocated;
        mean[usize::from(*kind == "miss")] += ns / 2.0;
        println!("lookup {kind}, {family}: {ns:.0} ns/op");
    }
    println!(
        "lookup over {lookups} hits / {lookups} misses (half IPv4, half IPv6): {:.0} / {:.0} ns/op (median of {PASSES} passes); allocations during all {} lookups: {allocations}",
        mean[0],
        mean[1],
        PASSES * 4 * half,
    );
}

fn main() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let count = std::env::args()
        .nth(1)
        .map_or(PREFIXES, |n| n.parse().expect("PREFIXES must be a number"));
    let prefixes: Vec<Cidr> = (0..count).map(|_| rng.cidr()).collect();
    let v4 = prefixes.iter().filter(|c| c.network().is_ipv4()).count();
    println!(
        "prefixes: {count} random ({v4} IPv4 /8-/32, {} IPv6 /16-/128)",
        count - v4
    );

    let sources = Sources::deal(prefixes.iter());
    let built = build(&sources);
    memory_line("both families", &built, true);
    let db = built.db;
    for (label, want_v6) in [("IPv4 only", false), ("IPv6 only", true)] {
        let family = Sources::deal(prefixes.iter().filter(|c| c.network().is_ipv6() == want_v6));
        memory_line(label, &build(&family), false);
    }
    parse_line(&sources);

    lookup_lines(&db, &prefixes, &mut rng);

    let start = Instant::now();
    let exported = db.watched_prefixes().count();
    let export_time = start.elapsed();
    let counts = db.watched_counts();
    assert_eq!(exported, counts.total());
    println!(
        "watched prefixes for the kernel: {} IPv4 + {} IPv6, exported in {:.0} ms",
        counts.v4,
        counts.v6,
        export_time.as_secs_f64() * 1e3
    );
}
