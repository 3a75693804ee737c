#!/usr/bin/env python3
"""Labels the processes in a sshd-trace.bt trace, one section per `mark` of sshd-trace.sh.

    python3 tests/scenarios/sshd-trace-label.py OUTDIR > OUTDIR/labelled.txt

Labels: L the listener, M the connection's process (forked by L, re-executed as `sshd -R`: the
monitor), net the pre-auth child (chroot + setresuid to the sshd user), PAM a child of M that calls
pam_authenticate (keyboard-interactive), motd a child of M that runs /bin/sh (pam_motd), U the
user child (setresuid(u,u,u) with u != 0), S the session child (forked by U, or by M for root).
Descendants of S and of motd (login scripts, run-parts) are left out; times are ms since the
section's first event. Only what the trace shows is used; nothing is looked up in /proc.
"""

import re
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/sshd-trace"
facts = open(f"{out}/facts.txt").read()
listener = int(re.search(r"listener L:\s+(\d+)", facts).group(1))

sections = {}
order = []
current = None
for line in open(f"{out}/trace.txt").read().splitlines():
    m = re.match(r"\s*\d+ mark =+ (\S+)", line)
    if m:
        current = m.group(1)
        order.append(current)
        sections[current] = []
    elif current:
        sections[current].append(line)

EVENT = re.compile(r"\s*(\d+) (\S+)\s+pid=(\d+) ppid=(\d+) (.*)")
label = {listener: "L"}


def name(pid):
    return label.get(pid, str(pid))


for kind in order:
    events = [m.groups() for m in map(EVENT.match, sections[kind]) if m]
    rows = []
    for t, ev, pid, _ppid, rest in events:
        pid = int(pid)
        who = name(pid)
        if ev == "fork":
            child = int(re.search(r"child=(\d+)", rest).group(1))
            if who == "L":
                label[child] = "M"
            elif who == "U":
                label[child] = "S"
            elif who.startswith(("S", "motd")):
                label[child] = who.rstrip("+") + "+"
            else:
                label[child] = who + ".child"
        elif ev == "chroot" or (ev == "setresuid" and re.search(r"args=\(102,102,102\)", rest)):
            label[pid] = "net"
        elif ev == "exec" and who == "M.child" and "comm=sh " in rest:
            label[pid] = "motd"
        elif ev == "pam" and who == "M.child" and "pam_authenticate" in rest:
            label[pid] = "PAM"
        elif ev == "setresuid" and who == "M.child":
            m = re.search(r"args=\((\d+),\1,\1\)", rest)
            if m:
                label[pid] = "U" if m.group(1) != "0" else "S"
        rows.append((int(t), pid, ev, rest))
    print(f"##### {kind}")
    t0 = rows[0][0] if rows else 0
    for t, pid, ev, rest in rows:
        who = name(pid)
        if who.endswith("+") or who == "motd":
            continue
        rest = rest.replace("4294967295", "-")
        rest = re.sub(r"comm=\S+ ", "", rest)
        rest = re.sub(r"/tmp/monitor-e2e-sshd-trace-\d+", "<scratch>", rest)
        rest = re.sub(r"child=(\d+)", lambda m: "child=" + name(int(m.group(1))), rest)
        print(f"{t - t0:5d} {who:6s} {ev:11s} {rest}")
