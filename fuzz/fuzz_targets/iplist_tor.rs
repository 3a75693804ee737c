//! Tor exit lists (`enrichment.tor_exits`): the bulk list or `exit-addresses` records, told apart
//! by their content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::iplist::{Enrichment, detect_tor_format, parse_tor, parse_tor_exit_addresses};

#[path = "iplist_common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = detect_tor_format(&text);
    let records = parse_tor_exit_addresses(&text);
    common::check_issues(&records.bad_lines, &records.normalised);
    let parsed = parse_tor(&text);
    common::check_issues(&parsed.bad_lines, &parsed.normalised);
    let mut builder = Enrichment::builder();
    builder.tor_exits(&parsed.entries);
    common::check_database(&builder.build(), parsed.entries.iter().copied(), data);
});
