//! Plain and netset lists (`[[enrichment.lists]]`: `FireHOL`, Spamhaus DROP, Feodo): downloaded
//! files, parsed line by line into the longest-prefix database.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::iplist::{Enrichment, parse_plain};

#[path = "iplist_common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_plain(&text);
    common::check_issues(&parsed.bad_lines, &parsed.normalised);
    let mut builder = Enrichment::builder();
    builder.list("fuzz", &parsed.entries);
    common::check_database(&builder.build(), parsed.entries.iter().copied(), data);
});
