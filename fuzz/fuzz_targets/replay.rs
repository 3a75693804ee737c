//! `monitor replay FILE`: recorded `--events` output, which a user may hand over from anywhere.
//! Each line is parsed, judged by the detector under the default policy, and every record
//! (events and the alerts they raise) is written in every output format.
#![no_main]

use std::{
    io::BufReader,
    sync::{Arc, LazyLock},
};

use libfuzzer_sys::fuzz_target;
use monitor::{
    output::{Format, Output},
    policy::Policy,
    record::{Record, Recorded},
    replay,
};

const FORMATS: [Format; 5] = [
    Format::Native,
    Format::Ocsf,
    Format::Ecs,
    Format::Text { colour: false },
    Format::Text { colour: true },
];

fn write_all_formats(record: &Record) {
    for format in FORMATS {
        let mut out = Output::with_format(std::io::sink(), format.encoder());
        // A record the format cannot express (a time that is not RFC 3339) is an error.
        let _ = out.write(record);
    }
}

/// Parsed once: loading the default policy is not what this target is about.
static POLICY: LazyLock<Arc<Policy>> = LazyLock::new(|| Arc::new(Policy::embedded_default()));

fuzz_target!(|data: &[u8]| {
    let policy = Arc::clone(&POLICY);
    let _ = replay::replay_reader("fuzz.jsonl", BufReader::new(data), policy, |alert| {
        write_all_formats(&Record::Alert(alert));
    });
    for line in String::from_utf8_lossy(data).lines() {
        if let Ok(Recorded::Event(event)) = Recorded::parse(line) {
            write_all_formats(&Record::Event(*event));
        }
    }
});
