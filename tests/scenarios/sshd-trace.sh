#!/usr/bin/env bash
# Ground truth for docs/research/sshd-9.2-trace.md: runs the real sshd with the same scratch
# configuration as tests/src/sshd.rs, traces it with sshd-trace.bt, and drives one session of each
# kind from a network namespace, labelled with `/usr/bin/true MARK <kind>` (which the script prints).
# A second pass holds each kind of session open and prints /proc facts of every process under the
# listener (uids, loginuid, sessionid, fd 0, sockets). OUTDIR gets trace.txt (raw), labelled.txt
# (sshd-trace-label.py: pids named L/M/net/U/S per session kind), driver.txt (client output and the
# /proc snapshots), sshd.log and facts.txt.
#
#   sudo bash tests/scenarios/sshd-trace.sh [OUTDIR]      (default OUTDIR: /tmp/sshd-trace)
#
# Needs openssh-server, openssh-client, sshpass, socat (cargo xtask bootstrap) and bpftrace (apt).
# Traffic stays between this host and a namespace it creates (10.77.255.252/30, fd77:0:0:3fff::/64).
# Leaves nothing behind but OUTDIR and the user monitortest (created if missing, password locked).
set -euo pipefail

OUT=${1:-/tmp/sshd-trace}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
USER_NAME=monitortest
NS=mon-trace-$$
HOST4=10.77.255.253 NS4=10.77.255.254 HOST6=fd77:0:0:3fff::1 NS6=fd77:0:0:3fff::2
DIR=/tmp/monitor-e2e-sshd-trace-$$
PORT=24222
mkdir -p "$OUT"

# Pids of every live descendant of $1.
descendants() {
    ps -e -o pid=,ppid= | awk -v l="$1" '
        { parent[$1] = $2 }
        END { for (p in parent) { q = p; while (q in parent && q != l && q > 1) q = parent[q]; if (q == l && p != l) print p } }' | sort -n
}

cleanup() {
    set +e
    [[ -n ${BPF:-} ]] && kill -INT "$BPF" && wait "$BPF"
    if [[ -n ${SSHD:-} ]]; then
        # Sessions live in sessions of their own (each connection calls setsid): kill them by pid.
        for p in $(descendants "$SSHD"); do kill -KILL "$p"; done
        kill -TERM "$SSHD"; wait "$SSHD"
    fi
    [[ -n ${OLD_HASH:-} ]] && usermod -p "$OLD_HASH" "$USER_NAME"
    ip link del mvhtrace 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$DIR"
    [[ -s $OUT/trace.txt ]] && python3 "$HERE/sshd-trace-label.py" "$OUT" >"$OUT/labelled.txt"
}
trap cleanup EXIT

# --- namespace, user, keys, config (as tests/src/sshd.rs writes them) ----------------------------
ip link add mvhtrace type veth peer name mvntrace
ip netns add "$NS"
ip link set mvntrace netns "$NS"
ip addr add $HOST4/30 dev mvhtrace
ip addr add $HOST6/64 dev mvhtrace nodad
ip link set mvhtrace up
ip -n "$NS" addr add $NS4/30 dev mvntrace
ip -n "$NS" addr add $NS6/64 dev mvntrace nodad
ip -n "$NS" link set mvntrace up
ip -n "$NS" link set lo up

getent passwd $USER_NAME >/dev/null || useradd -m -s /bin/bash $USER_NAME
OLD_HASH=$(getent shadow $USER_NAME | cut -d: -f2)
PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$USER_NAME:$PASSWORD" | chpasswd

mkdir -p "$DIR/authorized_keys" /run/sshd
chmod 755 "$DIR" "$DIR/authorized_keys"
for k in host user root wrong; do ssh-keygen -q -t ed25519 -N '' -C "trace-$k" -f "$DIR/$k"; done
cp "$DIR/user.pub" "$DIR/authorized_keys/$USER_NAME"
cp "$DIR/root.pub" "$DIR/authorized_keys/root"
chmod 644 "$DIR"/authorized_keys/*
cat >"$DIR/sshd_config" <<EOF
Port $PORT
AddressFamily any
ListenAddress 127.0.0.1
ListenAddress $HOST4
ListenAddress $HOST6
HostKey $DIR/host
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys/%u
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication yes
UsePAM yes
PermitRootLogin prohibit-password
PrintMotd no
X11Forwarding no
UseDNS no
LoginGraceTime 30
LogLevel VERBOSE
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
/usr/sbin/sshd -t -f "$DIR/sshd_config"
setsid /usr/sbin/sshd -D -e -f "$DIR/sshd_config" 2>"$OUT/sshd.log" &
SSHD=$!
for _ in $(seq 100); do ss -Hltn "sport = :$PORT" | grep -q "$HOST4" && break; sleep 0.1; done

{
    echo "sshd $(dpkg-query -W -f='${Version}' openssh-server), libpam $(dpkg-query -W -f='${Version}' libpam0g), kernel $(uname -r)"
    echo "privsep user: $(getent passwd sshd)"
    echo "test user:    $(getent passwd $USER_NAME)"
    echo "listener L:   $SSHD"
} >"$OUT/facts.txt"
cat "$OUT/facts.txt"

ulimit -l unlimited 2>/dev/null || true  # bpftrace warns when it cannot raise it; kernel 6.18 does not need it
bpftrace --no-warnings "$HERE/sshd-trace.bt" "$SSHD" >"$OUT/trace.txt" 2>"$OUT/bpftrace.err" &
BPF=$!
for _ in $(seq 600); do
    grep -q '^tracing' "$OUT/trace.txt" 2>/dev/null && break
    kill -0 $BPF 2>/dev/null || { cat "$OUT/bpftrace.err"; BPF=; exit 1; }
    sleep 0.1
done

# --- clients ------------------------------------------------------------------------------------
OPTS=(-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
      -o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10)
KEY=(-o IdentitiesOnly=yes -o BatchMode=yes -o PreferredAuthentications=publickey)
PW=(-o PubkeyAuthentication=no -o NumberOfPasswordPrompts=1)
in_ns() { timeout 30 ip netns exec "$NS" "$@"; }
# In the background, with C = the pid of `timeout`, which passes a SIGTERM on to the client.
in_ns_bg() { timeout 30 ip netns exec "$NS" "$@" & C=$!; }
mark() { /usr/bin/true MARK "$1" "${2:-}"; echo "=== $1 ${2:-}"; sleep 0.3; }
settle() { sleep 1.5; }

# "tcp", "tcp6", "unix[:path]" or "other" for socket inode $2 of process $1.
socket_kind() {
    local f
    for f in tcp tcp6; do
        awk -v i="$2" 'NR > 1 && $10 == i { found = 1 } END { exit !found }' "/proc/$1/net/$f" && { echo "$f"; return; }
    done
    awk -v i="$2" 'NR > 1 && $7 == i { printf "unix%s", ($8 != "" ? ":" $8 : ""); found = 1 } END { exit !found }' "/proc/$1/net/unix" && return
    echo other
}

# Every process under the listener, with what a detector could read in /proc.
snapshot() {
    echo "--- /proc under L=$SSHD during: $1"
    for p in $(descendants "$SSHD"); do
        [[ -d /proc/$p ]] || continue
        printf 'pid=%s ppid=%s sid=%s title="%s"\n' "$p" "$(awk '{print $4}' /proc/$p/stat)" \
            "$(ps -o sid= "$p" | tr -d ' ')" "$(tr '\0' ' ' </proc/$p/cmdline | sed 's/ *$//')"
        printf '    %s  %s  loginuid=%s sessionid=%s\n' "$(grep ^Uid: /proc/$p/status | tr '\t' ' ')" \
            "$(grep ^Gid: /proc/$p/status | tr '\t' ' ')" "$(cat /proc/$p/loginuid)" "$(cat /proc/$p/sessionid)"
        printf '    exe=%s fd0=%s fd1=%s fd2=%s\n' "$(readlink /proc/$p/exe)" \
            "$(readlink /proc/$p/fd/0)" "$(readlink /proc/$p/fd/1)" "$(readlink /proc/$p/fd/2)"
        local socks="" link inode
        for fd in /proc/$p/fd/*; do
            link=$(readlink "$fd") || continue
            [[ $link == socket:* ]] || continue
            inode=${link#socket:[}; inode=${inode%]}
            socks+=" ${fd##*/}=$(socket_kind "$p" "$inode")"
        done
        printf '    sockets:%s\n' "${socks:- none}"
    done
    echo "--- TCP sessions on :$PORT"
    ss -Htnp state established "( sport = :$PORT )"
}

{
    echo "### pass 1: one session of each kind, traced"
    mark "pubkey-command" "ssh user@host id"
    in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/user" -p $PORT $USER_NAME@$HOST4 id; settle
    mark "pubkey-pty" "ssh -tt user@host (login shell, types id, exit)"
    printf 'id\nexit\n' | in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/user" -p $PORT -tt $USER_NAME@$HOST4 >/dev/null; settle
    mark "pubkey-pty-command" "ssh -tt user@host 'echo hi'"
    in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/user" -p $PORT -tt $USER_NAME@$HOST4 'echo hi' </dev/null; settle
    mark "pubkey-sftp" "sftp -b (ls)"
    echo "ls /tmp" >"$DIR/batch"
    in_ns sftp "${OPTS[@]}" "${KEY[@]}" -i "$DIR/user" -P $PORT -b "$DIR/batch" $USER_NAME@$HOST4 >/dev/null; settle
    mark "pubkey-N" "ssh -N user@host, killed after 2 s"
    in_ns_bg ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/user" -p $PORT -N $USER_NAME@$HOST4; sleep 2; kill $C; wait $C || true; settle
    mark "pubkey-command-v6" "ssh user@[fd77:...] id"
    in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/user" -p $PORT $USER_NAME@$HOST6 id; settle
    mark "wrong-key" "ssh -i wrong user@host id"
    in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/wrong" -p $PORT $USER_NAME@$HOST4 id || echo "exit $?"; settle
    mark "root-command" "ssh root@host id"
    in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/root" -p $PORT root@$HOST4 id; settle
    mark "root-pty" "ssh -tt root@host (login shell, types id, exit)"
    printf 'id\nexit\n' | in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/root" -p $PORT -tt root@$HOST4 >/dev/null; settle
    mark "root-sftp" "sftp -b root@host"
    in_ns sftp "${OPTS[@]}" "${KEY[@]}" -i "$DIR/root" -P $PORT -b "$DIR/batch" root@$HOST4 >/dev/null; settle
    mark "root-N" "ssh -N root@host, killed after 2 s"
    in_ns_bg ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/root" -p $PORT -N root@$HOST4; sleep 2; kill $C; wait $C || true; settle
    mark "root-wrong-key" "ssh -i user-key root@host id"
    in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/user" -p $PORT root@$HOST4 id || echo "exit $?"; settle
    mark "password-command" "sshpass ssh -o PreferredAuthentications=password user@host id"
    SSHPASS=$PASSWORD in_ns sshpass -e ssh "${OPTS[@]}" "${PW[@]}" -o PreferredAuthentications=password -p $PORT $USER_NAME@$HOST4 id; settle
    mark "password-wrong" "wrong password"
    SSHPASS=x$PASSWORD in_ns sshpass -e ssh "${OPTS[@]}" "${PW[@]}" -o PreferredAuthentications=password -p $PORT $USER_NAME@$HOST4 id || echo "exit $?"; settle
    mark "kbdint-command" "sshpass ssh -o PreferredAuthentications=keyboard-interactive user@host id"
    SSHPASS=$PASSWORD in_ns sshpass -e ssh "${OPTS[@]}" "${PW[@]}" -o PreferredAuthentications=keyboard-interactive -p $PORT $USER_NAME@$HOST4 id; settle
    mark "kbdint-wrong" "wrong password over keyboard-interactive"
    SSHPASS=x$PASSWORD in_ns sshpass -e ssh "${OPTS[@]}" "${PW[@]}" -o PreferredAuthentications=keyboard-interactive -p $PORT $USER_NAME@$HOST4 id || echo "exit $?"; settle
    mark "password-pty" "sshpass ssh -tt user@host 'echo hi'"
    SSHPASS=$PASSWORD in_ns sshpass -e ssh "${OPTS[@]}" "${PW[@]}" -o PreferredAuthentications=password -p $PORT -tt $USER_NAME@$HOST4 'echo hi' </dev/null; settle
    mark "invalid-user" "ssh nosuchuser@host id (key)"
    in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/user" -p $PORT nosuchuser@$HOST4 id || echo "exit $?"; settle
    mark "invalid-user-password" "sshpass ssh nosuchuser@host (password)"
    SSHPASS=$PASSWORD in_ns sshpass -e ssh "${OPTS[@]}" "${PW[@]}" -o PreferredAuthentications=password -p $PORT nosuchuser@$HOST4 id || echo "exit $?"; settle
    mark "banner-only" "TCP connect, client banner, close after 1 s (no auth)"
    (printf 'SSH-2.0-probe\r\n'; sleep 1) | in_ns socat - TCP:$HOST4:$PORT >/dev/null || true; settle
    mark "connect-only" "TCP connect, nothing sent, close after 1 s"
    sleep 1 | in_ns socat - TCP:$HOST4:$PORT >/dev/null || true; settle

    echo "### pass 2: sessions held open, /proc read during them"
    mark "snap-preauth" "TCP connect + banner, held"
    (printf 'SSH-2.0-probe\r\n'; sleep 3) | in_ns socat - TCP:$HOST4:$PORT >/dev/null & C=$!; sleep 1.5; snapshot "pre-auth (banner sent, no auth)"; wait $C || true; settle
    mark "snap-command" "ssh user@host 'sleep 3'"
    in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/user" -p $PORT $USER_NAME@$HOST4 'sleep 3' & C=$!; sleep 1.5; snapshot "pubkey command"; wait $C; settle
    mark "snap-pty" "ssh -tt user@host (shell runs sleep 3)"
    (printf 'sleep 3; exit\n'; sleep 4) | in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/user" -p $PORT -tt $USER_NAME@$HOST4 >/dev/null & C=$!; sleep 1.5; snapshot "pubkey pty login shell"; wait $C || true; settle
    mark "snap-sftp" "sftp held open"
    (sleep 3; echo "ls /tmp") | in_ns sftp "${OPTS[@]}" "${KEY[@]}" -i "$DIR/user" -P $PORT -b - $USER_NAME@$HOST4 >/dev/null & C=$!; sleep 1.5; snapshot "pubkey sftp"; wait $C || true; settle
    mark "snap-N" "ssh -N user@host"
    in_ns_bg ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/user" -p $PORT -N $USER_NAME@$HOST4; sleep 1.5; snapshot "pubkey -N"; kill $C; wait $C || true; settle
    mark "snap-password" "password, sleep 3"
    SSHPASS=$PASSWORD in_ns sshpass -e ssh "${OPTS[@]}" "${PW[@]}" -o PreferredAuthentications=password -p $PORT $USER_NAME@$HOST4 'sleep 3' & C=$!; sleep 1.5; snapshot "password command"; wait $C; settle
    mark "snap-kbdint" "keyboard-interactive, sleep 3"
    SSHPASS=$PASSWORD in_ns sshpass -e ssh "${OPTS[@]}" "${PW[@]}" -o PreferredAuthentications=keyboard-interactive -p $PORT $USER_NAME@$HOST4 'sleep 3' & C=$!; sleep 1.5; snapshot "kbd-int command"; wait $C; settle
    mark "snap-root-command" "ssh root@host 'sleep 3'"
    in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/root" -p $PORT root@$HOST4 'sleep 3' & C=$!; sleep 1.5; snapshot "root command"; wait $C; settle
    mark "snap-root-pty" "ssh -tt root@host (shell runs sleep 3)"
    (printf 'sleep 3; exit\n'; sleep 4) | in_ns ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/root" -p $PORT -tt root@$HOST4 >/dev/null & C=$!; sleep 1.5; snapshot "root pty login shell"; wait $C || true; settle
    mark "snap-root-N" "ssh -N root@host"
    in_ns_bg ssh "${OPTS[@]}" "${KEY[@]}" -i "$DIR/root" -p $PORT -N root@$HOST4; sleep 1.5; snapshot "root -N"; kill $C; wait $C || true; settle
    mark "end"
} 2>&1 | tee "$OUT/driver.txt"
sleep 1
