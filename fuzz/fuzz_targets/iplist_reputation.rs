//! Reputation files (`enrichment.reputation`): CSV with quoted fields, a header, tags.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::iplist::{Enrichment, parse_reputation_csv};

#[path = "iplist_common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_reputation_csv(&text);
    common::check_issues(&parsed.bad_lines, &parsed.normalised);
    let mut builder = Enrichment::builder();
    builder.reputation(&parsed.entries);
    let networks = parsed.entries.iter().map(|e| e.network);
    common::check_database(&builder.build(), networks, data);
});
