#![no_std]
// This file exists so that monitor's build.rs can depend on this crate (cargo rebuilds the daemon
// when the eBPF sources change). The programs live in the `monitor` binary target.
