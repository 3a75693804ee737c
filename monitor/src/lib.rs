//! monitor: an eBPF host-security daemon.
//!
//! Modules follow the data's trip: [`probes`] loads and attaches the eBPF programs (with
//! [`btf`] supplying kernel struct offsets) → [`decode`] turns ring-buffer bytes into typed
//! events → [`clock`] and [`process_table`] add wall time, exe, argv and ancestry →
//! [`record`] is the JSON contract → [`policy`] + [`detect`] (with [`baseline`] for sockets that
//! were listening before start-up) raise alerts → [`output`] writes JSON lines. [`daemon`] runs the
//! live loop; [`replay`] runs recorded events through the same detection code.

pub mod baseline;
pub mod btf;
pub mod clock;
pub mod daemon;
pub mod decode;
pub mod detect;
pub mod iplist;
pub mod netrange;
pub mod output;
pub mod policy;
pub mod probes;
pub mod process_table;
pub mod record;
pub mod replay;
