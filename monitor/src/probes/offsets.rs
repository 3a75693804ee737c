//! Kernel offsets for the eBPF programs: struct members from BTF ([`super::btf`]) and
//! tracepoint record fields from tracefs `format` files.

use log::warn;
use monitor_common::{KernelOffsets, OFFSET_ABSENT};

use super::btf;

/// Where tracefs keeps the tracepoint format files (the debugfs path is the pre-4.1 location).
const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Offsets from BTF and the tracepoint formats; anything missing is logged and left invalid.
pub(super) fn load_offsets() -> KernelOffsets {
    let mut offsets = match btf::Btf::from_sys_fs() {
        Ok(parsed) => {
            let report = btf::kernel_offsets(&parsed);
            for missing in &report.missing {
                warn!("BTF: {missing}; falling back (see /proc for exe and argv)");
            }
            report.offsets
        }
        Err(e) => {
            warn!("BTF: {e}; exec records will carry no exe/argv (userspace reads /proc)");
            KernelOffsets::UNKNOWN
        }
    };
    match tracepoint_field("sched", "sched_process_fork", "child_pid") {
        Ok(Some(off)) => offsets.tp_fork_child_pid = off,
        Ok(None) => warn!(
            "sched_process_fork has no child_pid field; assuming offset {}",
            offsets.tp_fork_child_pid
        ),
        Err(e) => warn!(
            "{e}; assuming child_pid at offset {}",
            offsets.tp_fork_child_pid
        ),
    }
    match tracepoint_field("sched", "sched_process_exit", "group_dead") {
        Ok(Some(off)) => offsets.tp_exit_group_dead = off,
        Ok(None) => offsets.tp_exit_group_dead = OFFSET_ABSENT,
        Err(e) => warn!(
            "{e}; assuming group_dead at offset {}",
            offsets.tp_exit_group_dead
        ),
    }
    offsets
}

/// Offset of `field` in a tracepoint's record, from its tracefs `format` file.
fn tracepoint_field(category: &str, name: &str, field: &str) -> Result<Option<u32>, String> {
    let mut last_error = String::new();
    for root in TRACEFS_ROOTS {
        let path = format!("{root}/events/{category}/{name}/format");
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(format_field_offset(&text, field)),
            Err(e) => last_error = format!("reading {path}: {e}"),
        }
    }
    Err(last_error)
}

/// Parses lines like `\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;`.
fn format_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?.split(';').next()?;
        // The name is the declaration's last word, without an array suffix (`comm[16]`).
        let name = decl.split_whitespace().last()?.split('[').next()?;
        if name != field {
            return None;
        }
        line.split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK_FORMAT: &str = "name: sched_process_fork\nID: 366\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
        \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
        \tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\
        \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
    const OLD_EXIT_FORMAT: &str = "format:\n\
        \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
        \tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
        \tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;\n";

    #[test]
    fn tracepoint_format_fields_are_found_by_name() {
        assert_eq!(format_field_offset(FORK_FORMAT, "child_pid"), Some(20));
        assert_eq!(format_field_offset(FORK_FORMAT, "parent_pid"), Some(12));
        assert_eq!(format_field_offset(OLD_EXIT_FORMAT, "comm"), Some(8));
        assert_eq!(format_field_offset(OLD_EXIT_FORMAT, "pid"), Some(24));
        assert_eq!(format_field_offset(OLD_EXIT_FORMAT, "group_dead"), None);
        // "pid" must not match "child_pid" or "parent_pid".
        assert_eq!(format_field_offset(FORK_FORMAT, "pid"), None);
    }
}
