//! monitor: an eBPF host-security daemon.
//!
//! Modules follow the data's trip (docs/architecture.md draws it): [`probes`] loads and attaches
//! the eBPF programs → [`decode`] turns ring-buffer bytes into typed kernel events →
//! [`process_table`] keeps who is who (seeded through [`procfs`]) → [`enrich`] builds each
//! event record's context → [`detect`] runs the [`rules`] → [`output`] writes the [`record`]s.
//! [`pipeline`] chains those stages for one record, [`daemon`] runs the live loop around it, and
//! [`replay`] feeds recorded events through the same detector. [`baseline`] finds the sockets
//! that were listening before start-up, and [`audit`] judges them on their own (`monitor
//! audit`); [`status`] counts for the status records.
//!
//! The policy: [`policy`] loads it; its pieces are [`matcher`] values built by [`validate`], and
//! each rule declares its own section.

pub mod audit;
pub mod baseline;
pub mod clock;
pub mod daemon;
pub mod decode;
pub mod detect;
pub mod enrich;
pub mod host;
pub mod identity;
pub mod iplist;
pub mod login;
pub mod matcher;
pub mod metrics;
pub mod netrange;
pub mod output;
pub mod pipeline;
pub mod policy;
pub mod privilege;
pub mod probes;
pub mod process_table;
pub mod procfs;
pub mod record;
pub mod reload;
pub mod replay;
pub mod rules;
pub mod status;
#[cfg(test)]
mod testing;
pub mod trust;
pub mod validate;
