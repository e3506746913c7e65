#!/usr/bin/env bash
# Throughput of the recording proxy against PostgreSQL directly and PgBouncer,
# in one invocation on the same machine, so that the ratios mean something on
# a shared, noisy host.
#
#   bash benches/proxy_pgbench.sh            # 8 then 64 clients, 3 rounds of 15 s each, then the memory run
#   ROUNDS=5 SECONDS_PER_RUN=20 CLIENTS="8 64" bash benches/proxy_pgbench.sh
#   CLIENTS=64 bash benches/proxy_pgbench.sh
#   FLOWAUDIT=/tmp/flowaudit-before bash benches/proxy_pgbench.sh
#
# For each client count C of $CLIENTS, each round runs
# `pgbench -n -S -M prepared -c C -j 2 -T $SECONDS_PER_RUN` (select-only)
# directly, through `flowaudit proxy` (recording every statement to a trace
# file and auditing it) and through PgBouncer in session mode, in turn; odd
# rounds run flowaudit before PgBouncer, even rounds after, so that neither
# always gets the machine in the same state. Printed per client count: the
# medians of the rounds with the ratio of those medians, and the median of
# the per-round ratios flowaudit / PgBouncer, which compares runs seconds
# apart and so is the less affected by the load of a shared machine drifting
# over minutes; the target (>= 1.10x with every client count) is judged on it.
#
# Also printed per client count, for the proxy's process and PgBouncer's,
# summed over the rounds and divided by the transactions pgbench counted:
# user and system CPU time (utime and stime of /proc/<pid>/stat), and, as
# counts the load of the machine does not distort, system calls
# (`perf stat -e raw_syscalls:sys_enter`, when perf can count them) and
# voluntary context switches (the wake-ups; /proc/<pid>/task/*/status).
# Read the ratio with the load average printed beside it: on a machine
# busy with other work, flowaudit's two threads (relay and writer) get a
# larger share of the cores than PgBouncer's one, which favours flowaudit;
# the CPU time and the counts per transaction do not depend on that.
#
# Then a fresh proxy records 1,000,000 statements (8 clients, -t 125000 per
# client) and its peak resident memory (VmHWM) is read from /proc before it
# stops.
#
# Needs the PostgreSQL server on 127.0.0.1:5432 (trust, user postgres, with
# max_connections above twice the largest client count) and installs
# PgBouncer from the distribution's packages when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
CLIENTS="${CLIENTS:-8 64}"
TARGET=1.10
SECONDS_PER_RUN="${SECONDS_PER_RUN:-15}"
MEMORY_STATEMENTS_PER_CLIENT="${MEMORY_STATEMENTS_PER_CLIENT:-125000}"
PGHOST=127.0.0.1
PGUSER=postgres
export PGHOST PGUSER

if ! command -v pgbouncer >/dev/null 2>&1; then
    echo "== installing pgbouncer (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
fi
pgbouncer --version | head -1

# FLOWAUDIT=/path/to/flowaudit measures that binary instead (say, a build of
# an earlier commit, to compare).
if [ -z "${FLOWAUDIT:-}" ]; then
    echo "== building flowaudit (release)"
    cargo build --release --quiet
    FLOWAUDIT="$PWD/target/release/flowaudit"
fi

WORK="$(mktemp -d)"
chmod 755 "$WORK"
DB="flowaudit_bench_$$"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    psql -X -q -p 5432 -d test -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== pgbench -i -s 10 into $DB"
psql -X -q -p 5432 -d test -c "CREATE DATABASE $DB"
pgbench -i -q -s 10 -p 5432 "$DB" >/dev/null 2>&1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

MAX_CLIENTS="$(printf '%s\n' $CLIENTS | sort -n | tail -1)"

# PgBouncer, session mode, trusting the local server like the server does,
# with a server connection for every client. Its idle server connections
# close after a second, so that each run starts its backends afresh, as the
# direct and flowaudit runs do, and the server never holds PgBouncer's idle
# ones and flowaudit's at once.
BOUNCER_PORT="$(free_port)"
echo '"postgres" ""' > "$WORK/userlist.txt"
cat > "$WORK/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=5432
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = session
max_client_conn = $((MAX_CLIENTS + 20))
default_pool_size = $((MAX_CLIENTS + 4))
server_idle_timeout = 1
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
INI
chown -R postgres "$WORK" 2>/dev/null || true
if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- pgbouncer -d "$WORK/pgbouncer.ini"
else
    pgbouncer -d "$WORK/pgbouncer.ini"
fi
sleep 1
BOUNCER_PID="$(cat "$WORK/pgbouncer.pid")"
PIDS+=("$BOUNCER_PID")

# flowaudit, recording every statement to a trace and auditing it.
PROXY_PORT="$(free_port)"
"$FLOWAUDIT" proxy --listen "127.0.0.1:$PROXY_PORT" --upstream "postgres://postgres@127.0.0.1:5432/$DB" \
    --trace "$WORK/trace.jsonl" --format json --output "$WORK/report.json" --fail-on never --skip-invariants \
    2>"$WORK/proxy.log" &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
for _ in $(seq 1 50); do pg_isready -q -p "$PROXY_PORT" && break; sleep 0.1; done

COUNT_SYSCALLS=0
if perf stat -x, -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then COUNT_SYSCALLS=1; fi

# The backends of the bench database, once the previous run's are gone.
settle() {
    for _ in $(seq 1 100); do
        n="$(psql -X -At -p 5432 -d test -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$DB'")"
        [ "$n" -eq 0 ] && return 0
        sleep 0.1
    done
    echo "warning: $n backends of $DB still open" >&2
}

# utime + stime of a process in clock ticks, and its voluntary context
# switches summed over its threads.
ticks() { awk '{sub(/^.*\) /, ""); print $12, $13}' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {n += $2} END {print n + 0}'; }

# run PORT CLIENTS [PID]: prints "tps transactions" (and, with a PID, that
# process's "utime stime switches syscalls" over the run).
run() {
    local port="$1" c="$2" pid="${3:-}" out="$WORK/pgbench.out" before after s0 s1 sc=0
    settle
    if [ -n "$pid" ]; then
        before="$(ticks "$pid")"; s0="$(switches "$pid")"
        if [ "$COUNT_SYSCALLS" -eq 1 ]; then
            perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$WORK/perf.out" &
            PERF_PID=$!
        fi
    fi
    pgbench -n -S -M prepared -c "$c" -j 2 -T "$SECONDS_PER_RUN" -p "$port" "$DB" >"$out" 2>/dev/null || true
    if [ -n "$pid" ]; then
        after="$(ticks "$pid")"; s1="$(switches "$pid")"
        if [ "$COUNT_SYSCALLS" -eq 1 ]; then
            kill -INT "$PERF_PID"; wait "$PERF_PID" || true
            sc="$(awk -F, '/raw_syscalls/ {print $1; exit}' "$WORK/perf.out")"
        fi
    fi
    awk '/^tps = / {t = $3} /^number of transactions actually processed/ {n = $NF} END {printf "%s %s", t, n}' "$out"
    if [ -n "$pid" ]; then
        read -r u0 k0 <<<"$before"; read -r u1 k1 <<<"$after"
        printf ' %s %s %s %s' "$((u1 - u0))" "$((k1 - k0))" "$((s1 - s0))" "$sc"
    fi
    echo
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
HZ="$(getconf CLK_TCK)"
SUMMARY=()
MISSED=0
for c in $CLIENTS; do
    echo "== $c clients: pgbench -n -S -M prepared -c $c -j 2 -T $SECONDS_PER_RUN"
    LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
    DIRECT=(); FLOWAUDIT_TPS=(); BOUNCER=(); RATIOS=()
    # Totals over the rounds: transactions, ticks, switches, system calls.
    FN=0 FU=0 FK=0 FS=0 FC=0 BN=0 BU=0 BK=0 BS=0 BC=0
    for round in $(seq 1 "$ROUNDS"); do
        read -r d _ <<<"$(run 5432 "$c")"
        if [ $((round % 2)) -eq 1 ]; then
            fl="$(run "$PROXY_PORT" "$c" "$PROXY_PID")"; bl="$(run "$BOUNCER_PORT" "$c" "$BOUNCER_PID")"
        else
            bl="$(run "$BOUNCER_PORT" "$c" "$BOUNCER_PID")"; fl="$(run "$PROXY_PORT" "$c" "$PROXY_PID")"
        fi
        read -r f fn fu fk fs fc <<<"$fl"
        read -r b bn bu bk bs bc <<<"$bl"
        FN=$((FN + fn)); FU=$((FU + fu)); FK=$((FK + fk)); FS=$((FS + fs)); FC=$((FC + fc))
        BN=$((BN + bn)); BU=$((BU + bu)); BK=$((BK + bk)); BS=$((BS + bs)); BC=$((BC + bc))
        r="$(awk -v f="$f" -v b="$b" 'BEGIN {printf "%.3f", f / b}')"
        DIRECT+=("$d"); FLOWAUDIT_TPS+=("$f"); BOUNCER+=("$b"); RATIOS+=("$r")
        printf 'round %d: direct %10.0f tps   flowaudit %10.0f tps   pgbouncer %10.0f tps   flowaudit / pgbouncer %s\n' \
            "$round" "$d" "$f" "$b" "$r"
    done
    MD="$(median "${DIRECT[@]}")"; MF="$(median "${FLOWAUDIT_TPS[@]}")"; MB="$(median "${BOUNCER[@]}")"
    MR="$(median "${RATIOS[@]}")"
    LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
    SUMMARY+=("$(
        echo "pgbench -S -M prepared -c $c -j 2 -T $SECONDS_PER_RUN, median of $ROUNDS rounds (load average $LOAD_BEFORE before, $LOAD_AFTER after, on $(nproc) cores):"
        printf '  direct     %10.0f tps\n' "$MD"
        printf '  flowaudit  %10.0f tps\n' "$MF"
        printf '  pgbouncer  %10.0f tps   (session mode)\n' "$MB"
        awk -v f="$MF" -v b="$MB" -v d="$MD" 'BEGIN {
            printf "  flowaudit / pgbouncer = %.2f×   (ratio of the medians)\n", f / b
            printf "  flowaudit / direct    = %.2f×\n", f / d
            printf "  pgbouncer / direct    = %.2f×\n", b / d
        }'
        printf '  flowaudit / pgbouncer = %.2f×   (median of the per-round ratios %s; target ≥ %.2f×)\n' \
            "$MR" "$(IFS=,; echo "${RATIOS[*]}" | sed 's/,/, /g')" "$TARGET"
        awk -v hz="$HZ" -v fn="$FN" -v fu="$FU" -v fk="$FK" -v fs="$FS" -v fc="$FC" -v counted="$COUNT_SYSCALLS" \
            -v bn="$BN" -v bu="$BU" -v bk="$BK" -v bs="$BS" -v bc="$BC" 'BEGIN {
            printf "  per transaction, over all rounds (%d and %d transactions):\n", fn, bn
            printf "    flowaudit  user %5.2f µs  system %5.2f µs  wake-ups %5.2f", fu / hz / fn * 1e6, fk / hz / fn * 1e6, fs / fn
            if (counted) printf "  system calls %5.2f", fc / fn
            printf "\n    pgbouncer  user %5.2f µs  system %5.2f µs  wake-ups %5.2f", bu / hz / bn * 1e6, bk / hz / bn * 1e6, bs / bn
            if (counted) printf "  system calls %5.2f", bc / bn
            printf "\n"
        }'
    )")
    awk -v r="$MR" -v t="$TARGET" 'BEGIN { exit (r >= t) ? 0 : 1 }' || MISSED=1
done

kill -TERM "$PROXY_PID"
wait "$PROXY_PID" || true
RECORDED="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["capture"]["recorded"])' "$WORK/report.json")"
DROPPED="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["capture"]["dropped"])' "$WORK/report.json")"

# Memory: a fresh proxy records 8 × $MEMORY_STATEMENTS_PER_CLIENT statements.
settle
PROXY_PORT="$(free_port)"
"$FLOWAUDIT" proxy --listen "127.0.0.1:$PROXY_PORT" --upstream "postgres://postgres@127.0.0.1:5432/$DB" \
    --trace "$WORK/trace-mem.jsonl" --format json --output "$WORK/report-mem.json" --fail-on never --skip-invariants \
    2>"$WORK/proxy-mem.log" &
MEM_PID=$!
PIDS+=("$MEM_PID")
for _ in $(seq 1 50); do pg_isready -q -p "$PROXY_PORT" && break; sleep 0.1; done
pgbench -n -S -M prepared -c 8 -j 2 -t "$MEMORY_STATEMENTS_PER_CLIENT" -p "$PROXY_PORT" "$DB" >/dev/null 2>&1
HWM_KB="$(awk '/VmHWM/ {print $2}' "/proc/$MEM_PID/status")"
kill -TERM "$MEM_PID"
wait "$MEM_PID" || true
MEM_RECORDED="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["capture"]["recorded"])' "$WORK/report-mem.json")"
MEM_LINES="$(wc -l < "$WORK/trace-mem.jsonl")"

echo
printf '%s\n' "${SUMMARY[@]}"
echo "flowaudit recorded $RECORDED statements over all its runs, $DROPPED dropped"
echo "memory: peak RSS of the proxy with 8 clients over $MEM_RECORDED recorded statements ($MEM_LINES trace lines): $((HWM_KB / 1024)) MB (target < 50 MB)"
# Like the other benchmarks, exit 1 when a target is missed.
awk -v kb="$HWM_KB" 'BEGIN { exit (kb < 50 * 1024) ? 0 : 1 }' || MISSED=1
if [ "$MISSED" -ne 0 ]; then
    echo "target missed"
    exit 1
fi
