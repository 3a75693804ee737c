#!/bin/bash
# Stands in for the daemon (MONITOR_BIN) while recording replay fixtures: runs the real daemon
# ($MONITOR_REAL_BIN) with the same pid (exec) and copies its stdout, unedited, to
# $MONITOR_E2E_RECORD_DIR/raw-<pid>.jsonl. tests/tests/detections.rs picks the scenario's lines.
set -euo pipefail
exec "${MONITOR_REAL_BIN:?}" "$@" > >(exec tee "${MONITOR_E2E_RECORD_DIR:?}/raw-$$.jsonl")
