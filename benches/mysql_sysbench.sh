#!/usr/bin/env bash
# Throughput of the recording proxy for MySQL/MariaDB against the server
# directly and against HAProxy relaying the same connections in TCP mode, in
# one invocation on the same machine, so that the ratios mean something on a
# shared, noisy host; then whether every statement was recorded, and the
# proxy's peak memory over a million statements.
#
#   bash benches/mysql_sysbench.sh            # 3 rounds of 15 s each, then the memory run
#   ROUNDS=5 SECONDS_PER_RUN=20 bash benches/mysql_sysbench.sh
#   FLOWAUDIT=/tmp/flowaudit-before bash benches/mysql_sysbench.sh
#   MEMORY_STATEMENTS=2000000 bash benches/mysql_sysbench.sh
#
# Each round runs `sysbench oltp_point_select --threads=$THREADS
# --time=$SECONDS_PER_RUN` (one prepared primary-key SELECT per event, as
# server-side prepared statements: COM_STMT_EXECUTE) directly against
# MariaDB on 127.0.0.1:3306, through `flowaudit proxy` (recording every
# statement to a trace file and auditing it when stopped) and through
# HAProxy in TCP mode (a relay that reads nothing: what relaying alone costs
# here, the second loopback hop each way), in turn; odd rounds run direct,
# flowaudit, HAProxy, even rounds the reverse, so that neither end always
# gets the machine in the same state. Printed: each round's tps, the medians,
# and the medians of the per-round ratios flowaudit / direct and flowaudit /
# HAProxy, which compare runs seconds apart and so are the less affected by
# the load of a shared machine drifting over minutes; the target (flowaudit
# / direct >= 0.75x, goal >= 0.85x) is judged on the first. Also printed,
# for the proxy and HAProxy, the user and system CPU time per statement
# (utime and stime of /proc/<pid>/stat), summed over the rounds: on a small
# machine the relay's share of the kernel's loopback work is most of it.
#
# Every statement recorded: the queries sysbench counted over the flowaudit
# rounds must equal the statements in the proxy's report (capture.recorded,
# and summary.statements, those audited) and the lines of its trace, with
# none dropped.
#
# Memory: a fresh proxy, started under /usr/bin/time -v, relays
# $MEMORY_STATEMENTS statements (`--events=$MEMORY_STATEMENTS --time=0`, 8
# threads); its peak resident memory while relaying (VmHWM, read from /proc
# before it stops) and over its whole life, the final audit of the
# statements included (time's maximum resident set size), must both stay
# under 50 MB; the count check above is made on this run too.
#
# Needs MariaDB (or MySQL) on 127.0.0.1:3306, user root without a password,
# and installs sysbench and HAProxy from the distribution's packages when
# they are missing.
# Creates its own database ($DB, the sysbench tables by `sysbench prepare`)
# and drops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-15}"
THREADS="${THREADS:-8}"
TABLES="${TABLES:-4}"
TABLE_SIZE="${TABLE_SIZE:-100000}"
MEMORY_STATEMENTS="${MEMORY_STATEMENTS:-1000000}"
TARGET=0.75
GOAL=0.85
MEMORY_LIMIT_MB=50
DB="${DB:-sbtest_flowaudit_$$}"

if ! command -v sysbench >/dev/null 2>&1; then
    echo "== installing sysbench (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sysbench >/dev/null
fi
sysbench --version | sed -n 1p
if ! command -v haproxy >/dev/null 2>&1; then
    echo "== installing haproxy (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
fi
haproxy -v | sed -n 1p
if [ ! -x /usr/bin/time ]; then
    echo "== installing time (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi
MYSQL_CLIENT="$(command -v mariadb || command -v mysql)"
sql() { "$MYSQL_CLIENT" -h 127.0.0.1 -P 3306 -u root --batch --skip-column-names -e "$1"; }
echo "server: $(sql 'SELECT VERSION()')"

# FLOWAUDIT=/path/to/flowaudit measures that binary instead (say, a build of
# an earlier commit, to compare).
if [ -z "${FLOWAUDIT:-}" ]; then
    echo "== building flowaudit (release)"
    cargo build --release --quiet
    FLOWAUDIT="$PWD/target/release/flowaudit"
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    sql "DROP DATABASE IF EXISTS \`$DB\`" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# sysbench's connection options against PORT, and the workload's.
sb() {
    local port="$1"; shift
    sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$port" \
        --mysql-user=root --mysql-db="$DB" --tables="$TABLES" --table-size="$TABLE_SIZE" "$@"
}

echo "== sysbench oltp_point_select prepare: $TABLES tables of $TABLE_SIZE rows into $DB"
sql "DROP DATABASE IF EXISTS \`$DB\`; CREATE DATABASE \`$DB\`"
sb 3306 --threads="$TABLES" prepare >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_proxy NAME [WRAPPER...]: a proxy recording to $WORK/NAME.jsonl and
# reporting to $WORK/NAME.json; sets PROXY_PORT and PROXY_PID (the proxy's
# own process, also when it runs under a wrapper such as /usr/bin/time).
start_proxy() {
    local name="$1"; shift
    PROXY_PORT="$(free_port)"
    "$@" "$FLOWAUDIT" proxy --listen "127.0.0.1:$PROXY_PORT" --upstream "mysql://127.0.0.1:3306" \
        --trace "$WORK/$name.jsonl" --format json --output "$WORK/$name.json" --fail-on never \
        --skip-invariants 2>"$WORK/$name.log" &
    LAUNCHED_PID=$!
    PIDS+=("$LAUNCHED_PID")
    PROXY_PID="$LAUNCHED_PID"
    if [ $# -gt 0 ]; then
        for _ in $(seq 1 50); do
            PROXY_PID="$(cat /proc/"$LAUNCHED_PID"/task/*/children 2>/dev/null | awk '{print $1}')"
            [ -n "$PROXY_PID" ] && break
            sleep 0.1
        done
    fi
    # The proxy says so on stderr once it listens.
    for _ in $(seq 1 100); do grep -q relaying "$WORK/$name.log" && return 0; sleep 0.1; done
    echo "the proxy did not start:" >&2
    cat "$WORK/$name.log" >&2
    exit 2
}

# stop_proxy: SIGTERM, then wait for the report.
stop_proxy() {
    kill -TERM "$PROXY_PID"
    wait "$LAUNCHED_PID" || true
}

# The statements of a report: recorded and dropped by the capture, and
# audited (the summary's count).
report_counts() {
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); c=r["capture"]; print(c["recorded"], c["dropped"], r["summary"]["statements"])' "$1"
}

# The server's connections to the bench database, once the previous run's are gone.
settle() {
    local n
    for _ in $(seq 1 100); do
        n="$(sql "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '$DB'")"
        [ "$n" -eq 0 ] && return 0
        sleep 0.1
    done
    echo "warning: $n connections to $DB still open" >&2
}

# utime and stime of a process in clock ticks.
ticks() { awk '{sub(/^.*\) /, ""); print $12, $13}' "/proc/$1/stat"; }

# run PORT [PID]: prints "tps queries ignored-errors" (and, with a PID, that
# process's user and system CPU ticks over the run). Fails when sysbench does.
run() {
    local port="$1" pid="${2:-}" out="$WORK/sysbench.out" u0 k0 u1 k1
    settle
    [ -n "$pid" ] && read -r u0 k0 <<<"$(ticks "$pid")"
    if ! sb "$port" --threads="$THREADS" --time="$SECONDS_PER_RUN" --report-interval=0 run >"$out" 2>&1; then
        echo "sysbench failed against port $port:" >&2
        cat "$out" >&2
        exit 2
    fi
    [ -n "$pid" ] && read -r u1 k1 <<<"$(ticks "$pid")"
    awk '/^ *transactions:/ {tps = substr($3, 2)}
         /^ *total:/ {q = $2}
         /^ *ignored errors:/ {e = $3}
         END {printf "%s %s %s", tps, q, e}' "$out"
    [ -n "$pid" ] && printf ' %s %s' "$((u1 - u0))" "$((k1 - k0))"
    echo
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
HZ="$(getconf CLK_TCK)"
MISSED=0

# HAProxy, TCP mode: bytes relayed, nothing read. Its client and server
# timeouts outlast any run.
HAPROXY_PORT="$(free_port)"
cat >"$WORK/haproxy.cfg" <<CFG
global
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
listen mariadb
    bind 127.0.0.1:$HAPROXY_PORT
    server mariadb 127.0.0.1:3306
CFG
haproxy -db -f "$WORK/haproxy.cfg" 2>"$WORK/haproxy.log" &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")

start_proxy rounds
echo "== sysbench oltp_point_select --threads=$THREADS --time=$SECONDS_PER_RUN, $ROUNDS rounds, direct, through flowaudit proxy (port $PROXY_PORT) and through HAProxy (port $HAPROXY_PORT)"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
DIRECT=(); FLOWAUDIT_TPS=(); HAPROXY_TPS=(); RATIOS=(); RELAY_RATIOS=()
SENT=0 ERRORS=0 FU=0 FK=0 HN=0 HU=0 HK=0
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
        dl="$(run 3306)"; fl="$(run "$PROXY_PORT" "$PROXY_PID")"; hl="$(run "$HAPROXY_PORT" "$HAPROXY_PID")"
    else
        hl="$(run "$HAPROXY_PORT" "$HAPROXY_PID")"; fl="$(run "$PROXY_PORT" "$PROXY_PID")"; dl="$(run 3306)"
    fi
    read -r d _ _ <<<"$dl"
    read -r f fq fe fu fk <<<"$fl"
    read -r h hq _ hu hk <<<"$hl"
    SENT=$((SENT + fq)); ERRORS=$((ERRORS + fe)); FU=$((FU + fu)); FK=$((FK + fk))
    HN=$((HN + hq)); HU=$((HU + hu)); HK=$((HK + hk))
    r="$(awk -v f="$f" -v d="$d" 'BEGIN {printf "%.3f", f / d}')"
    rh="$(awk -v f="$f" -v h="$h" 'BEGIN {printf "%.3f", f / h}')"
    DIRECT+=("$d"); FLOWAUDIT_TPS+=("$f"); HAPROXY_TPS+=("$h"); RATIOS+=("$r"); RELAY_RATIOS+=("$rh")
    printf 'round %d: direct %8.0f tps   flowaudit %8.0f tps   haproxy %8.0f tps   flowaudit / direct %s   flowaudit / haproxy %s\n' \
        "$round" "$d" "$f" "$h" "$r" "$rh"
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
stop_proxy
read -r RECORDED DROPPED AUDITED <<<"$(report_counts "$WORK/rounds.json")"
LINES="$(wc -l <"$WORK/rounds.jsonl")"

echo "== memory: a fresh proxy relays $MEMORY_STATEMENTS statements (--events=$MEMORY_STATEMENTS --time=0, 8 threads)"
settle
start_proxy memory /usr/bin/time -v -o "$WORK/time.txt"
if ! sb "$PROXY_PORT" --threads=8 --events="$MEMORY_STATEMENTS" --time=0 run >"$WORK/memory.out" 2>&1; then
    echo "sysbench failed through the proxy:" >&2
    cat "$WORK/memory.out" >&2
    exit 2
fi
MEM_SENT="$(awk '/^ *total:/ {print $2}' "$WORK/memory.out")"
HWM_KB="$(awk '/VmHWM/ {print $2}' "/proc/$PROXY_PID/status")"
stop_proxy
LIFE_KB="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")"
read -r MEM_RECORDED MEM_DROPPED MEM_AUDITED <<<"$(report_counts "$WORK/memory.json")"
MEM_LINES="$(wc -l <"$WORK/memory.jsonl")"

echo
echo "sysbench oltp_point_select --threads=$THREADS --time=$SECONDS_PER_RUN ($TABLES tables of $TABLE_SIZE rows), median of $ROUNDS rounds (load average $LOAD_BEFORE before, $LOAD_AFTER after, on $(nproc) cores):"
MD="$(median "${DIRECT[@]}")"; MF="$(median "${FLOWAUDIT_TPS[@]}")"; MH="$(median "${HAPROXY_TPS[@]}")"
MR="$(median "${RATIOS[@]}")"; MRH="$(median "${RELAY_RATIOS[@]}")"
printf '  direct     %10.0f tps\n' "$MD"
printf '  flowaudit  %10.0f tps\n' "$MF"
printf '  haproxy    %10.0f tps   (TCP mode: relaying alone)\n' "$MH"
awk -v f="$MF" -v d="$MD" -v h="$MH" 'BEGIN {
    printf "  flowaudit / direct = %.2f×   (ratio of the medians)\n", f / d
    printf "  haproxy / direct   = %.2f×\n", h / d
}'
printf '  flowaudit / haproxy = %.2f×  (median of the per-round ratios %s)\n' \
    "$MRH" "$(IFS=,; echo "${RELAY_RATIOS[*]}" | sed 's/,/, /g')"
VERDICT=PASS
awk -v r="$MR" -v t="$TARGET" 'BEGIN { exit (r >= t) ? 0 : 1 }' || { VERDICT=FAIL; MISSED=1; }
GOAL_MET="goal met"
awk -v r="$MR" -v g="$GOAL" 'BEGIN { exit (r >= g) ? 0 : 1 }' || GOAL_MET="goal missed"
printf '  flowaudit / direct = %.2f×   (median of the per-round ratios %s)   %s (target ≥ %.2f×; %s, ≥ %.2f×)\n' \
    "$MR" "$(IFS=,; echo "${RATIOS[*]}" | sed 's/,/, /g')" "$VERDICT" "$TARGET" "$GOAL_MET" "$GOAL"
awk -v hz="$HZ" -v fn="$SENT" -v fu="$FU" -v fk="$FK" -v hn="$HN" -v hu="$HU" -v hk="$HK" 'BEGIN {
    printf "  CPU per statement, over all rounds (%d and %d statements):\n", fn, hn
    printf "    flowaudit  user %5.2f µs  system %5.2f µs\n", fu / hz / fn * 1e6, fk / hz / fn * 1e6
    printf "    haproxy    user %5.2f µs  system %5.2f µs\n", hu / hz / hn * 1e6, hk / hz / hn * 1e6
}'

VERDICT=PASS
if [ "$RECORDED" -ne $((SENT + ERRORS)) ] || [ "$LINES" -ne "$RECORDED" ] || [ "$AUDITED" -ne "$RECORDED" ] \
    || [ "$DROPPED" -ne 0 ] || [ "$MEM_RECORDED" -ne "$MEM_SENT" ] || [ "$MEM_LINES" -ne "$MEM_RECORDED" ] \
    || [ "$MEM_AUDITED" -ne "$MEM_RECORDED" ] || [ "$MEM_DROPPED" -ne 0 ]; then
    VERDICT=FAIL; MISSED=1
fi
echo "every statement recorded: $VERDICT"
echo "  rounds: sysbench sent $SENT queries ($ERRORS ignored errors); the report recorded $RECORDED ($AUDITED audited), $DROPPED dropped; the trace has $LINES lines"
echo "  memory run: sysbench sent $MEM_SENT queries; the report recorded $MEM_RECORDED ($MEM_AUDITED audited), $MEM_DROPPED dropped; the trace has $MEM_LINES lines"

VERDICT=PASS
awk -v a="$HWM_KB" -v b="$LIFE_KB" -v l="$MEMORY_LIMIT_MB" 'BEGIN { exit (a < l * 1024 && b < l * 1024) ? 0 : 1 }' \
    || { VERDICT=FAIL; MISSED=1; }
printf 'memory: peak RSS of the proxy over %d recorded statements: %.1f MB relaying (VmHWM), %.1f MB over its whole life with the audit (time -v)   %s (target < %d MB)\n' \
    "$MEM_RECORDED" "$(awk -v k="$HWM_KB" 'BEGIN {print k / 1024}')" "$(awk -v k="$LIFE_KB" 'BEGIN {print k / 1024}')" \
    "$VERDICT" "$MEMORY_LIMIT_MB"

# Like the other benchmarks, exit 1 when a target is missed.
if [ "$MISSED" -ne 0 ]; then
    echo "target missed"
    exit 1
fi
