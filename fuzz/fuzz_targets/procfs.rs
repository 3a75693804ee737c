//! What the daemon reads from /proc about other processes, which they partly control (a comm
//! with spaces and parentheses, argv): `/proc/<pid>/stat` and `status`, and the socket tables
//! `/proc/net/{tcp,udp}{,6}` of the start-up baseline and `monitor audit`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::{baseline, procfs, record::Protocol};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = procfs::parse_stat(&text);
    let _ = procfs::parse_status(&text);
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        for v6 in [false, true] {
            let _ = baseline::parse_table(&text, v6, protocol);
            for line in text.lines() {
                let _ = baseline::parse_line(line, v6, protocol);
            }
        }
    }
});
