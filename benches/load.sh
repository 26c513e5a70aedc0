#!/usr/bin/env bash
# Load benchmark of the Alertmanager receiver: untoil serve vs adnanh/webhook.
#
# Posts the real firing fixture with wrk, each request carrying a fingerprint of its own (so
# every request is a new alert; identical payloads would rightly be deduplicated), to:
#   1. `untoil serve` with one runbook `bench` whose only step is `run: "true"`;
#   2. `webhook` (adnanh/webhook, Debian package `webhook`) with a hook that runs /bin/true and
#      waits for it (include-command-output-in-response: true);
# same payload, same load, same machine, loopback only. Reports accepted alerts/s, ack latency
# p50/p99, executed runs/s, runs lost/doubled (every acknowledged run id must be recorded and
# finished), idle and peak RSS, and the untoil/webhook throughput ratio (target >= 1.5x).
#
# Usage: bash benches/load.sh
# Environment (all optional):
#   DURATION=10s CONNECTIONS=32 THREADS=2   wrk load, the same for both servers
#   WORKERS=<n>                             untoil --workers (default: untoil's, 2 x CPUs)
#   QUEUE_CAPACITY=1000000                  untoil --queue-capacity (large: measure acceptance)
#   UNTOIL_LOG=warn                         untoil log filter (info = the daemon's default)
#   DRAIN_TIMEOUT=90                        seconds to wait for every accepted run to finish
#   FIXTURE=tests/fixtures/alertmanager/firing.json
#   SKIP_BUILD=1                            use the existing target/release/untoil
#   SKIP_WEBHOOK=1                          untoil only
#   KEEP=1                                  keep the temp dir (logs, store, wrk output)
#   SYSCALLS=1                              count flush syscalls, futex calls, context switches
#                                           and execs per ack/run with `perf stat -a` (root)
# Requires: cargo, wrk, webhook, python3, curl (perf for SYSCALLS=1). Takes about 1-1.5 min
# after the build (2 x DURATION plus the drain of untoil's queue).

set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-}
QUEUE_CAPACITY=${QUEUE_CAPACITY:-1000000}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-90}
FIXTURE=${FIXTURE:-tests/fixtures/alertmanager/firing.json}
export UNTOIL_LOG=${UNTOIL_LOG:-warn}

die() { echo "load.sh: $*" >&2; exit 1; }
for tool in wrk webhook python3 curl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install wrk webhook python3 curl)"
done
[[ -f $FIXTURE ]] || die "fixture $FIXTURE not found"
FIXTURE=$(cd "$(dirname "$FIXTURE")" && pwd)/$(basename "$FIXTURE")

if [[ -z ${SKIP_BUILD:-} ]]; then
    echo "== cargo build --release" >&2
    cargo build --release --quiet
fi
UNTOIL=$PWD/target/release/untoil
[[ -x $UNTOIL ]] || die "$UNTOIL not built"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/untoil-load.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Bounded wait: SIGKILL whatever is still there after 10 s.
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n ${KEEP:-} ]]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Polls URL until it answers 2xx or the deadline (seconds) passes; fails if PID died.
wait_http() {
    local url=$1 pid=$2 deadline=$((SECONDS + $3))
    until curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "server (pid $pid) exited; see its log"
        ((SECONDS < deadline)) || die "$url not up after $3 s"
        sleep 0.05
    done
}

# CPU seconds of PID and its waited-for children (utime + stime + cutime + cstime).
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13 + $14 + $15) / hz }' "/proc/$1/stat"; }

# With SYSCALLS=1 (and perf, as root): counts flush syscalls, context switches and process
# execs between perf_start and perf_stop. System-wide (perf -p on the daemon misses the threads
# it starts later and slowed it 40x), so run it on an otherwise idle machine.
PERF_EVENTS=syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_sync_file_range,syscalls:sys_enter_futex,context-switches,sched:sched_process_exec
PERF_PID=
perf_start() {
    [[ -n ${SYSCALLS:-} ]] || return 0
    perf stat -a -x, -o "$TMP/perf-$1.txt" -e "$PERF_EVENTS" 2>/dev/null &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
    sleep 0.3
}
perf_stop() {
    [[ -n $PERF_PID ]] || return 0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
}
# "event N (N/run), ..." from perf-NAME.txt; $2 = runs to divide by.
perf_counts() {
    [[ -f $TMP/perf-$1.txt ]] || { echo "n/a (SYSCALLS=1 to count)"; return; }
    awk -F, -v n="$2" '$3 != "" && $1 ~ /^[0-9]+$/ {
        e = $3; sub(/.*sys_enter_/, "", e); sub(/^sched:sched_process_/, "", e)
        printf "%s%s %d (%.1f/run)", sep, e, $1, (n > 0 ? $1 / n : 0); sep = ", " } END { print "" }' "$TMP/perf-$1.txt"
}

kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# --- fixtures ------------------------------------------------------------------------------
mkdir -p "$TMP/runbooks" "$TMP/plugins" "$TMP/data"
cat >"$TMP/runbooks/bench.yaml" <<'EOF'
name: bench
owner: bench
toil:
  manual_minutes: 1
triggers:
  - alert:
      matchers: ['alertname="DiskFull"']
steps:
  - name: noop
    run: "true"
EOF

cat >"$TMP/hooks.json" <<'EOF'
[
  {
    "id": "alert",
    "execute-command": "/bin/true",
    "include-command-output-in-response": true
  }
]
EOF

# wrk script: the fixture with a unique fingerprint per request (thread id + counter); counts
# 200 / 503 / other per thread, keeps the run ids untoil acknowledged, and done() aggregates
# over the threads (the `threads` table pattern of wrk's scripts/setup.lua).
cat >"$TMP/load.lua" <<'EOF'
local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
  local text = f:read("*a")
  f:close()
  local s, e = text:find('"fingerprint"%s*:%s*"[^"]*"')
  assert(s, "no fingerprint in the fixture")
  prefix = text:sub(1, s - 1) .. '"fingerprint": "'
  suffix = '"' .. text:sub(e + 1)
  n, ok, s503, other, nacked = 0, 0, 0, 0, 0
  acked = {}
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  return wrk.format(nil, nil, nil, prefix .. string.format("%04x%012x", tid, n) .. suffix)
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    local list = body:match('"accepted"%s*:%s*%[(.-)%]')
    if list then
      for id in list:gmatch('"([^"]+)"') do
        nacked = nacked + 1
        acked[nacked] = id
      end
    end
  elseif status == 503 then
    s503 = s503 + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local ok_, s503_, other_ = 0, 0, 0
  local out = assert(io.open(os.getenv("BENCH_IDS"), "w"))
  for _, t in ipairs(threads) do
    ok_ = ok_ + t:get("ok")
    s503_ = s503_ + t:get("s503")
    other_ = other_ + t:get("other")
    for _, id in ipairs(t:get("acked")) do
      out:write(id, "\n")
    end
  end
  out:close()
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d ok=%d s503=%d other=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_timeout=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.0f\n",
    summary.requests, summary.duration, ok_, s503_, other_,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
EOF

# Runs wrk against URL; leaves its BENCH line's fields in the associative array named by $2.
run_wrk() {
    local url=$1 name=$2 log=$TMP/wrk-$2.txt
    echo "== wrk -t$THREADS -c$CONNECTIONS -d$DURATION $url" >&2
    LOADAVG=$(cut -d' ' -f1 /proc/loadavg)
    BENCH_BODY=$FIXTURE BENCH_IDS=$TMP/acked-$name.txt \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 10s -s "$TMP/load.lua" "$url" >"$log" 2>&1 ||
        { cat "$log" >&2; die "wrk failed"; }
    grep -q '^BENCH ' "$log" || { cat "$log" >&2; die "wrk printed no BENCH line"; }
    local -n fields=$2
    local kv
    fields[loadavg]=$LOADAVG
    for kv in $(grep '^BENCH ' "$log" | cut -d' ' -f2-); do
        fields[${kv%%=*}]=${kv#*=}
    done
}

ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
rate() { awk -v n="$1" -v us="$2" 'BEGIN { printf "%.0f", (us > 0 ? n / (us / 1e6) : 0) }'; }

# --- untoil --------------------------------------------------------------------------------
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
args=(--runbooks "$TMP/runbooks" --plugins "$TMP/plugins" --data "$TMP/data"
      serve --listen "127.0.0.1:$PORT" --queue-capacity "$QUEUE_CAPACITY")
[[ -n $WORKERS ]] && args+=(--workers "$WORKERS")
echo "== untoil ${args[*]} (UNTOIL_LOG=$UNTOIL_LOG)" >&2
env -u UNTOIL_TOKEN -u UNTOIL_TOKEN_FILE -u UNTOIL_BASIC_AUTH -u UNTOIL_BASIC_AUTH_FILE \
    -u UNTOIL_WORKERS -u UNTOIL_QUEUE_CAPACITY \
    "$UNTOIL" "${args[@]}" >"$TMP/untoil.log" 2>&1 &
UPID=$!
PIDS+=("$UPID")
wait_http "$BASE/healthz" "$UPID" 30
curl -fsS "$BASE/api/v1/runbooks/bench" >/dev/null || die "runbook bench not loaded; see $TMP/untoil.log"
sleep 1
U_IDLE=$(kib "$UPID" VmRSS)

declare -A U=()
U_CPU0=$(cpu_s "$UPID")
perf_start load
run_wrk "$BASE/api/v1/alerts/alertmanager" U
LOAD_END=$(date +%s.%N)
perf_stop
U_CPU1=$(cpu_s "$UPID")
perf_start drain

# Wait until no run is queued or running: first on the cheap toil report (rollups count finished
# runs) until every acknowledged run could be finished, then with the run list's status filter
# (a scan that decodes every record, so it is not polled while thousands are still queued).
echo "== waiting for every accepted run to finish (deadline ${DRAIN_TIMEOUT}s)" >&2
drained=0
deadline=$((SECONDS + DRAIN_TIMEOUT))
acked_n=$(wc -l <"$TMP/acked-U.txt")
while ((SECONDS < deadline)); do
    finished=$(curl -fsS "$BASE/api/v1/reports/toil?format=json&since=1d" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["total"]["runs"])')
    ((finished >= acked_n)) && break
    sleep 0.2
done
while ((SECONDS < deadline)); do
    q=$(curl -fsS "$BASE/api/v1/runs?status=queued&limit=1")
    r=$(curl -fsS "$BASE/api/v1/runs?status=running&limit=1")
    if [[ $q == "[]" && $r == "[]" ]]; then drained=1; break; fi
    sleep 0.5
done
perf_stop
U_CPU2=$(cpu_s "$UPID")
DRAIN_S=$(awk -v a="$LOAD_END" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
U_PEAK=$(kib "$UPID" VmHWM)
curl -fsS "$BASE/api/v1/runs?limit=0" >"$TMP/runs.json"
curl -fsS "$BASE/api/v1/reports/toil?format=json&since=1d" >"$TMP/toil.json"

# Checks every acknowledged run is recorded and finished once; the execution rate.
declare -A C=()
while IFS='=' read -r k v; do C[$k]=$v; done < <(python3 - "$TMP/runs.json" "$TMP/acked-U.txt" "$TMP/toil.json" "$LOAD_END" <<'EOF'
import json, sys
from collections import Counter
from datetime import datetime

def ts(s):
    # RFC 3339 with up to nanoseconds -> seconds since the epoch.
    s = s.replace("Z", "+00:00")
    head, _, tz = s.partition("+")
    if "." in head:
        head, frac = head.split(".")
        head += "." + (frac + "000000")[:6]
    return datetime.fromisoformat(head + "+" + tz).timestamp()

runs = json.load(open(sys.argv[1]))
acked = [l.strip() for l in open(sys.argv[2]) if l.strip()]
toil = json.load(open(sys.argv[3]))
by_id = {r["id"]: r for r in runs}
statuses = Counter(r["status"] for r in runs)
fps = Counter((r.get("cause") or {}).get("fingerprint") for r in runs)
final = [r for r in runs if r.get("finished_at")]
acked_set = set(acked)
print(f"runs={len(runs)}")
print(f"acked={len(acked)}")
print(f"acked_unique={len(acked_set)}")
print(f"lost={sum(1 for i in acked_set if i not in by_id)}")
print(f"acked_unfinished={sum(1 for i in acked_set if i in by_id and not by_id[i].get('finished_at'))}")
print(f"acked_not_succeeded={sum(1 for i in acked_set if i in by_id and by_id[i]['status'] != 'succeeded')}")
print(f"doubled={sum(c - 1 for c in fps.values() if c > 1)}")
print(f"unacked_extra={sum(1 for i in by_id if i not in acked_set)}")
print(f"statuses={','.join(f'{k}:{v}' for k, v in sorted(statuses.items()))}")
print(f"report_runs={toil['total']['runs']}")
if final:
    first = min(ts(r["created_at"]) for r in runs)
    last_created = max(ts(r["created_at"]) for r in runs)
    last = max(ts(r["finished_at"]) for r in final)
    print(f"exec_span_s={last - first:.2f}")
    print(f"exec_rate={len(final) / (last - first):.0f}")
    print(f"accept_span_s={last_created - first:.2f}")
    lat = sorted(ts(r["finished_at"]) - ts(r["created_at"]) for r in final)
    load_end = float(sys.argv[4])
    print(f"runs_during_load={sum(1 for r in final if ts(r['finished_at']) <= load_end)}")
    print(f"runs_after_load={sum(1 for r in final if ts(r['finished_at']) > load_end)}")
    print(f"e2e_p50_ms={lat[len(lat) // 2] * 1000:.0f}")
    print(f"e2e_p99_ms={lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000:.0f}")
EOF
)
U_RATE=$(rate "${U[ok]}" "${U[duration_us]}")
kill "$UPID" 2>/dev/null || true

# --- webhook -------------------------------------------------------------------------------
declare -A W=()
W_RATE=0
if [[ -z ${SKIP_WEBHOOK:-} ]]; then
    WPORT=$(free_port)
    echo "== webhook -hooks hooks.json -ip 127.0.0.1 -port $WPORT" >&2
    webhook -hooks "$TMP/hooks.json" -ip 127.0.0.1 -port "$WPORT" >"$TMP/webhook.log" 2>&1 &
    WPID=$!
    PIDS+=("$WPID")
    # webhook has no health endpoint: `/` answers 200 "OK" once it listens.
    wait_http "http://127.0.0.1:$WPORT/" "$WPID" 30
    sleep 1
    W_IDLE=$(kib "$WPID" VmRSS)
    W_CPU0=$(cpu_s "$WPID")
    perf_start webhook
    run_wrk "http://127.0.0.1:$WPORT/hooks/alert" W
    perf_stop
    W_CPU1=$(cpu_s "$WPID")
    W_PEAK=$(kib "$WPID" VmHWM)
    W_RATE=$(rate "${W[ok]}" "${W[duration_us]}")
    kill "$WPID" 2>/dev/null || true
fi

# --- summary -------------------------------------------------------------------------------
cpums() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.2f", (b - a) * 1000 / n; else print "n/a" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
verdict=FAIL
if [[ $drained == 1 && ${C[lost]} == 0 && ${C[doubled]} == 0 && ${C[acked_unfinished]} == 0 ]]; then
    verdict=ok
fi
cat <<EOF

== load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, fixture $(basename "$FIXTURE") with a unique fingerprint per request, $(nproc) CPUs, store on $(df -T "$TMP" | awk 'NR == 2 { print $2 }')
   1-min load average before each wrk run: untoil ${U[loadavg]}, webhook ${W[loadavg]:-n/a} (figures are only comparable on an otherwise idle machine)
untoil serve (workers ${WORKERS:-default 2 x CPUs}, queue capacity $QUEUE_CAPACITY, UNTOIL_LOG=$UNTOIL_LOG)
  accepted alerts/s     $U_RATE  (${U[ok]} x 200 in $(awk -v us="${U[duration_us]}" 'BEGIN { printf "%.1f", us / 1e6 }') s; 503: ${U[s503]}, other: ${U[other]}, socket errors: connect ${U[err_connect]} read ${U[err_read]} write ${U[err_write]} timeout ${U[err_timeout]})
  ack latency           p50 $(ms "${U[p50_us]}") ms, p90 $(ms "${U[p90_us]}") ms, p99 $(ms "${U[p99_us]}") ms, max $(ms "${U[max_us]}") ms
  executed runs/s       ${C[exec_rate]:-0}  (first accept to last finish ${C[exec_span_s]:-?} s; drained ${DRAIN_S} s after load, complete: $([[ $drained == 1 ]] && echo yes || echo "NO, deadline ${DRAIN_TIMEOUT}s"))
  alert-to-run-end      p50 ${C[e2e_p50_ms]:-?} ms, p99 ${C[e2e_p99_ms]:-?} ms (created_at -> finished_at)
  runs recorded         ${C[runs]} (statuses ${C[statuses]}; toil report total.runs ${C[report_runs]})
  acknowledged run ids  ${C[acked]}: lost ${C[lost]}, unfinished ${C[acked_unfinished]}, not succeeded ${C[acked_not_succeeded]}, doubled ${C[doubled]}
                        (+${C[unacked_extra]} run(s) accepted but not acknowledged to wrk: in flight at its cutoff)
  RSS                   idle $(mib "$U_IDLE") MiB, peak $(mib "$U_PEAK") MiB
  CPU (daemon+steps)    load $(cpums "$U_CPU0" "$U_CPU1") s, drain $(cpums "$U_CPU1" "$U_CPU2") s = $(per "$U_CPU0" "$U_CPU2" "${C[runs]}") ms per run
EOF
if [[ -n ${SYSCALLS:-} ]]; then
    cat <<EOF
  system-wide counts    during load (${U[ok]} acks, ${C[runs_during_load]:-?} runs finished): $(perf_counts load "${U[ok]}")
                        during drain (${C[runs_after_load]:-?} runs finished): $(perf_counts drain "${C[runs_after_load]:-0}")
EOF
fi
if [[ -z ${SKIP_WEBHOOK:-} ]]; then
cat <<EOF
webhook $(webhook -version 2>&1 | awk '{ print $NF }') (hook runs /bin/true and waits: include-command-output-in-response)
  requests/s            $W_RATE  (${W[ok]} x 200 in $(awk -v us="${W[duration_us]}" 'BEGIN { printf "%.1f", us / 1e6 }') s; other: $((${W[s503]} + ${W[other]})), socket errors: connect ${W[err_connect]} read ${W[err_read]} write ${W[err_write]} timeout ${W[err_timeout]})
  latency               p50 $(ms "${W[p50_us]}") ms, p90 $(ms "${W[p90_us]}") ms, p99 $(ms "${W[p99_us]}") ms, max $(ms "${W[max_us]}") ms
  RSS                   idle $(mib "$W_IDLE") MiB, peak $(mib "$W_PEAK") MiB
  CPU (daemon+true)     $(cpums "$W_CPU0" "$W_CPU1") s = $(per "$W_CPU0" "$W_CPU1" "${W[requests]}") ms per request
EOF
[[ -n ${SYSCALLS:-} ]] && echo "  system-wide counts    $(perf_counts webhook "${W[ok]}")"
cat <<EOF
ratio untoil/webhook
  accepted alerts/s     $(ratio "$U_RATE" "$W_RATE")  (target >= 1.5x)
  executed runs/s       $(ratio "${C[exec_rate]:-0}" "$W_RATE")
EOF
fi
echo "runs complete and accounted for: $verdict"
[[ $verdict == ok ]]
