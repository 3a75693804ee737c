//! Attaching: loads the object with its globals and walks the probe table, trying each hook's
//! attachments in order and recording what took and why the others did not (the status
//! record's `hooks`).

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{FEntry, TracePoint, UProbe, uprobe::UProbeScope},
};
use log::{debug, info, warn};
use monitor_common::{
    GLOBAL_FLOOR, GLOBAL_KERNEL_OFFSETS, GLOBAL_MONITOR_TGID, KernelOffsets, MAP_EVENTS,
};

use super::{
    EBPF_OBJECT, ProbeError, ProbeOptions,
    table::{Attach, PROBE_TABLE},
};
use crate::record::{AttachReport, HookStatus, Refusal};

/// An attachment that took: the label the report shows, and the optional part that did not take.
#[derive(Debug)]
struct Took {
    label: String,
    refused: Option<Refusal>,
}

/// Loads the object with these globals and walks the probe table. Fails when a logical hook has
/// no working attachment (dropping the half-attached `Ebpf` detaches the rest).
pub(super) fn attach_all(
    opts: &ProbeOptions,
    offsets: &KernelOffsets,
) -> Result<(Ebpf, AttachReport), ProbeError> {
    let floor = u32::from(opts.floor);
    // `EbpfLoader::new()` parses the kernel's BTF into a copy of its own that nothing else can
    // reach, and fentry programs need one to load: its copy is dropped before ours is made, so
    // the two (about 25 MB each while they live) never coexist.
    #[expect(
        clippy::needless_late_init,
        reason = "the loader borrows `btf`, so it is declared first, but filled after the loader's own copy is gone"
    )]
    let btf: Option<Btf>;
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    btf = match Btf::from_sys_fs() {
        Ok(btf) => Some(btf),
        Err(e) => {
            warn!("kernel BTF unavailable ({e}): fentry hooks will be skipped");
            None
        }
    };
    let btf = btf.as_ref();
    loader
        .btf(btf)
        .map_max_entries(MAP_EVENTS, opts.ring_buffer_bytes)
        .override_global(GLOBAL_MONITOR_TGID, &opts.monitor_tgid, true)
        .override_global(GLOBAL_FLOOR, &floor, true)
        .override_global(GLOBAL_KERNEL_OFFSETS, offsets, true);
    let mut ebpf = loader.load(EBPF_OBJECT)?;

    let mut report = AttachReport::new();
    for spec in PROBE_TABLE {
        let (hook, attaches) = (spec.name, spec.attaches);
        let mut status = HookStatus::default();
        for &attach in attaches {
            match try_attach(&mut ebpf, attach, btf, offsets) {
                Ok(took) => {
                    if let Some(refusal) = took.refused {
                        warn!("{hook}: {} refused: {}", refusal.hook, refusal.error);
                        status.refused.push(refusal);
                    }
                    status.attached = Some(took.label);
                    break;
                }
                Err(error) => {
                    debug!("{hook}: {} refused: {error}", attach.label());
                    status.refused.push(Refusal {
                        hook: attach.label(),
                        error,
                    });
                }
            }
        }
        if let Some(label) = &status.attached {
            info!("{hook}: attached {label}");
        } else if !spec.required {
            warn!(
                "{hook}: not attached ({}); what needs it is not seen",
                status
                    .refused
                    .iter()
                    .map(|r| format!("{}: {}", r.hook, r.error))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        } else {
            let refused = status
                .refused
                .iter()
                .map(|r| format!("{}: {}", r.hook, r.error))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ProbeError::NoAttachment { hook, refused });
        }
        report.insert(hook.to_owned(), status);
    }
    Ok((ebpf, report))
}

/// Loads and attaches one program (and its companions); the error text is what the report shows.
fn try_attach(
    ebpf: &mut Ebpf,
    attach: Attach,
    btf: Option<&Btf>,
    offsets: &KernelOffsets,
) -> Result<Took, String> {
    let mut took = Took {
        label: attach.label(),
        refused: None,
    };
    match attach {
        Attach::FEntry { program, function } => {
            let btf = btf.ok_or("kernel BTF unavailable")?;
            if offsets.sock_valid != 1 {
                return Err(sock_offsets_unavailable(offsets, ""));
            }
            let prog: &mut FEntry = ebpf
                .program_mut(program)
                .ok_or_else(|| format!("program {program} missing from the object"))?
                .try_into()
                .map_err(error_chain)?;
            prog.load(function, btf).map_err(error_chain)?;
            prog.attach().map_err(error_chain)?;
        }
        Attach::TracePoint {
            program,
            category,
            name,
        } => attach_tracepoint(ebpf, program, category, name)?,
        Attach::TracePointInSyscall {
            program,
            category,
            name,
            syscall,
            exit,
            hasten,
        } => {
            if offsets.sock_valid != 1 {
                return Err(sock_offsets_unavailable(
                    offsets,
                    " (needed to read the port when the syscall returns)",
                ));
            }
            let exit_tp = format!("sys_exit_{syscall}");
            // The exit first: a record parked by the state-change program must find a program
            // that sends it when its syscall returns.
            let attached = attach_tracepoint(ebpf, exit, "syscalls", &exit_tp)
                .map_err(|e| format!("tracepoint:syscalls:{exit_tp}: {e}"))
                .and_then(|()| {
                    attach_tracepoint(ebpf, program, category, name)
                        .map_err(|e| format!("tracepoint:{category}:{name}: {e}"))
                });
            if let Err(e) = attached {
                // Detach and unload whatever took, so the next attachment in the table (the
                // same tracepoint without the brackets) can load the program afresh.
                for p in [program, exit] {
                    unload_tracepoint(ebpf, p);
                }
                return Err(e);
            }
            if let Some(c) = hasten {
                match attach_tracepoint(ebpf, c.program, c.category, c.name) {
                    Ok(()) => took.label = format!("{}+{}:{}", took.label, c.category, c.name),
                    Err(error) => {
                        unload_tracepoint(ebpf, c.program);
                        took.refused = Some(Refusal {
                            hook: c.label(),
                            error,
                        });
                    }
                }
            }
        }
        Attach::Syscalls {
            exit,
            enter,
            syscalls,
            needs_files,
        } => {
            if needs_files && (offsets.files_valid != 1 || offsets.sock_valid != 1) {
                return Err(
                    "file-table or struct sock offsets not found in BTF (or switched off)".into(),
                );
            }
            // Exits first: a thread that an enter program marks must be seen leaving.
            let mut points: Vec<(&str, String)> = syscalls
                .iter()
                .map(|s| (exit, format!("sys_exit_{s}")))
                .collect();
            if let Some(enter) = enter {
                points.extend(syscalls.iter().map(|s| (enter, format!("sys_enter_{s}"))));
            }
            for (program, point) in &points {
                if let Err(e) = attach_tracepoint(ebpf, program, "syscalls", point) {
                    for p in [Some(exit), enter].into_iter().flatten() {
                        unload_tracepoint(ebpf, p);
                    }
                    return Err(format!("tracepoint:syscalls:{point}: {e}"));
                }
            }
        }
        Attach::SyscallPoints { programs } => {
            if offsets.files_valid != 1 || offsets.sock_valid != 1 {
                return Err(
                    "file-table or struct sock offsets not found in BTF (or switched off)".into(),
                );
            }
            for (program, point) in programs {
                if let Err(e) = attach_tracepoint(ebpf, program, "syscalls", point) {
                    for (p, _) in programs {
                        unload_tracepoint(ebpf, p);
                    }
                    return Err(format!("tracepoint:syscalls:{point}: {e}"));
                }
            }
        }
        Attach::URetProbes { library, probes } => {
            if offsets.files_valid != 1 {
                return Err(
                    "file-table offsets not found in BTF (or switched off): the probes \
                            could not tell an SSH server from any other program"
                        .into(),
                );
            }
            let path = find_library(library)
                .ok_or_else(|| format!("{library} not found in the library directories"))?;
            let path = path.to_string_lossy().into_owned();
            took.label = format!("{} ({path})", took.label);
            for (program, function) in probes {
                if let Err(e) = attach_uretprobe(ebpf, program, &path, function) {
                    for (p, _) in probes {
                        unload_uprobe(ebpf, p);
                    }
                    return Err(format!("{function}: {e}"));
                }
            }
        }
    }
    // How close a program is to the verifier's 1M-instruction budget, for whoever grows it next.
    for program in attach.programs() {
        if let Some(Ok(info)) = ebpf.program(program).map(aya::programs::Program::info) {
            debug!(
                "{program}: verifier processed {:?} instructions",
                info.verified_instruction_count()
            );
        }
    }
    Ok(took)
}

/// Why an attachment that reads `struct sock` is skipped: the offsets were not found, or they
/// were found and then switched off by the degraded reload (`skc_family` is never 0 once found:
/// `sock_common` starts with the addresses).
fn sock_offsets_unavailable(offsets: &KernelOffsets, needed_for: &str) -> String {
    if offsets.skc_family != 0 {
        format!("struct sock offsets switched off after a verifier refusal{needed_for}")
    } else {
        format!("struct sock offsets not found in BTF{needed_for}")
    }
}

/// Loads one tracepoint program and attaches it to `category:name`.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    category: &str,
    name: &str,
) -> Result<(), String> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?
        .try_into()
        .map_err(error_chain)?;
    // One program may serve several tracepoints: load it once.
    if prog.fd().is_err() {
        prog.load().map_err(error_chain)?;
    }
    prog.attach(category, name).map_err(error_chain)?;
    Ok(())
}

/// Loads one uretprobe program and attaches it to `function` in `library` for every process.
pub(super) fn attach_uretprobe(
    ebpf: &mut Ebpf,
    program: &str,
    library: &str,
    function: &str,
) -> Result<(), String> {
    let prog: &mut UProbe = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?
        .try_into()
        .map_err(error_chain)?;
    if prog.fd().is_err() {
        prog.load().map_err(error_chain)?;
    }
    prog.attach(function, library, UProbeScope::AllProcesses)
        .map_err(error_chain)?;
    Ok(())
}

/// Where the dynamic loader finds `name` on Debian-like and Red Hat-like systems (multiarch
/// directories first), resolved through symlinks: uprobes attach to the file's inode.
pub(super) fn find_library(name: &str) -> Option<std::path::PathBuf> {
    let triple = format!("{}-linux-gnu", std::env::consts::ARCH);
    [
        format!("/lib/{triple}"),
        format!("/usr/lib/{triple}"),
        "/lib64".to_owned(),
        "/usr/lib64".to_owned(),
        "/lib".to_owned(),
        "/usr/lib".to_owned(),
    ]
    .iter()
    .map(|dir| std::path::Path::new(dir).join(name))
    .find(|path| path.is_file())
    .and_then(|path| path.canonicalize().ok())
}

/// Detaches and unloads a uprobe program if it was loaded (best effort, on a failing path).
fn unload_uprobe(ebpf: &mut Ebpf, program: &str) {
    let Some(prog) = ebpf.program_mut(program) else {
        return;
    };
    let Ok(prog) = <&mut UProbe>::try_from(prog) else {
        return;
    };
    if prog.fd().is_ok()
        && let Err(e) = prog.unload()
    {
        debug!("unloading {program}: {}", error_chain(e));
    }
}

/// Detaches and unloads a tracepoint program if it was loaded (best effort: used on a path that
/// is already failing, so a second error is only logged).
fn unload_tracepoint(ebpf: &mut Ebpf, program: &str) {
    let Some(prog) = ebpf.program_mut(program) else {
        return;
    };
    let Ok(prog) = <&mut TracePoint>::try_from(prog) else {
        return;
    };
    if prog.fd().is_ok()
        && let Err(e) = prog.unload()
    {
        debug!("unloading {program}: {}", error_chain(e));
    }
}

/// "outer: inner: innermost" — aya's errors keep the errno in their sources. A verifier log, if
/// any, is left out of the report (it can be megabytes) and goes to the debug log instead.
fn error_chain(e: impl std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    if let Some((head, log)) = text.split_once("Verifier output:") {
        debug!("verifier output: {log}");
        text = head.trim_end().to_owned();
    }
    text
}

#[cfg(test)]
mod tests {
    use monitor_common::{PROG_LISTEN_INET_LISTEN, PROG_LISTEN_INET_SOCK_SET_STATE};

    use super::*;

    #[test]
    fn refusal_report_serializes_as_the_status_record_expects() {
        let mut report = AttachReport::new();
        report.insert(
            "listen".to_owned(),
            HookStatus {
                attached: Some(
                    Attach::TracePoint {
                        program: PROG_LISTEN_INET_SOCK_SET_STATE,
                        category: "sock",
                        name: "inet_sock_set_state",
                    }
                    .label(),
                ),
                refused: vec![Refusal {
                    hook: Attach::FEntry {
                        program: PROG_LISTEN_INET_LISTEN,
                        function: "inet_listen",
                    }
                    .label(),
                    error: "EPERM".to_owned(),
                }],
            },
        );
        let json = serde_json::to_value(&report).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({"listen": {"attached": "tracepoint:sock:inet_sock_set_state",
                "refused": [{"hook": "fentry:inet_listen", "error": "EPERM"}]}})
        );
    }

    #[test]
    fn sock_offsets_refusal_says_whether_they_were_found() {
        let missing = sock_offsets_unavailable(&KernelOffsets::UNKNOWN, "");
        assert_eq!(missing, "struct sock offsets not found in BTF");
        let switched_off = KernelOffsets {
            skc_family: 16,
            ..KernelOffsets::UNKNOWN
        };
        assert!(
            sock_offsets_unavailable(&switched_off, " (x)")
                .starts_with("struct sock offsets switched off after a verifier refusal"),
        );
    }
}
