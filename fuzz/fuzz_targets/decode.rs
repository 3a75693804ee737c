//! Ring-buffer records: `decode::decode` reads whatever bytes the kernel side hands over, so no
//! length, kind, family or flag may make it panic. Seeds: the wire records of decode.rs's unit
//! tests (`fuzz/corpus/decode/seed-*`, written by `seeds_match_the_wire_format` there).
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::decode::{self, KernelEvent};

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = decode::decode(data) {
        // Every decoded event has an origin, and its Debug form is what the daemon logs.
        let _ = format!("{:?}", event.origin());
        if let KernelEvent::Exec(exec) = &event {
            assert!(exec.argv.len() <= monitor::record::ARGV_MAX);
        }
    }
    // The argv splitter also reads /proc/<pid>/cmdline.
    let (argv, _) = decode::split_args(data);
    assert!(argv.len() <= monitor::record::ARGV_MAX);
});
