#!/bin/bash
# Records the replay fixtures from real runs of the privileged scenarios (as root):
#   tests/scenarios/record.sh [TEST-NAME-FILTER]
# writes monitor/tests/fixtures/recorded/<scenario>.jsonl: the daemon's event lines about each
# scenario's processes (the test process and its descendants), verbatim.
#
# Every event carries its ancestry up to pid 1, so the recording runs detached (setsid, parent
# pid 1): the fixtures then show test → cargo → this script → init, not the command lines of
# whatever terminal or agent started it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/monitor/tests/fixtures/recorded"

if [[ -z "${MONITOR_RECORD_DETACHED:-}" ]]; then
    log=$(mktemp /tmp/monitor-record.XXXXXX)
    MONITOR_RECORD_DETACHED="$log" setsid -f "$0" "$@" </dev/null >"$log" 2>&1
    while [[ ! -e "$log.rc" ]]; do sleep 1; done
    cat "$log"
    rc=$(cat "$log.rc")
    rm -f "$log" "$log.rc"
    exit "$rc"
fi

record() {
    mkdir -p "$out"
    cd "$root"
    cargo build -p monitor
    export MONITOR_REAL_BIN="$root/target/debug/monitor"
    export MONITOR_BIN="$root/tests/scenarios/tee-monitor.sh"
    export MONITOR_E2E_RECORD_DIR="$out"
    # The daemon's raw output, of which the tests keep the scenario's lines.
    trap 'rm -f "$out"/raw-*.jsonl' EXIT
    local status=0
    cargo test -p monitor-tests --test detections --test logins -- --test-threads=1 "$@" || status=$?
    ls -l "$out"
    return "$status"
}
rc=0
( record "$@" ) || rc=$?
echo "$rc" >"$MONITOR_RECORD_DETACHED.rc"
