# shellcheck shell=bash
# Shared by the benchmark scripts (load.sh, fleet.sh, amplification.sh, queued.sh): sourced,
# not run.
#
# bench_setup NAME   builds the release binary unless SKIP_BUILD is set, sets UNTOIL (UNTOIL_BIN
#                    overrides target/release/untoil), makes a fresh temp dir TMP, and arranges
#                    for every pid added to PIDS to be stopped (and TMP removed unless KEEP) on
#                    exit. A script may define `before_cleanup` to run first and `after_stop`
#                    to run once those pids are stopped.
# die MESSAGE        prints "NAME.sh: MESSAGE" and exits 1.
# stop_pids PID...   SIGTERM, then SIGKILL whatever is still there after 10 s; waits for each.
# free_port, wait_http URL PID SECONDS, kib PID FIELD (a /proc/PID/status field in KiB), now,
# lines FILE (0 when missing), rate COUNT SECONDS, secs FROM TO, cpu_s PID (CPU seconds of PID
# and the children it waited for), cpu_split PID (the same two apart: "self children"),
# per_run_ms FROM TO N (milliseconds per item), busy_cpus (the machine's busy CPU-seconds and elapsed seconds
# so far, summed over the CPUs, from /proc/stat: "busy total").
#
# The receiver load (load.sh, fleet.sh), each function described above it: wrk_script,
# wrk_load, wrk_fields, untoil_serve, untoil_drain, untoil_account, webhook_serve.

BENCH_NAME=bench
die() { echo "$BENCH_NAME.sh: $*" >&2; exit 1; }

bench_setup() {
    BENCH_NAME=$1
    if [[ -z ${SKIP_BUILD:-} ]]; then
        echo "== cargo build --release" >&2
        cargo build --release --quiet
    fi
    UNTOIL=${UNTOIL_BIN:-$PWD/target/release/untoil}
    [[ -x $UNTOIL ]] || die "$UNTOIL not built"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/untoil-$BENCH_NAME.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    if declare -F before_cleanup >/dev/null; then
        before_cleanup
    fi
    stop_pids "${PIDS[@]}"
    if declare -F after_stop >/dev/null; then
        after_stop
    fi
    if [[ -n ${KEEP:-} ]]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}

stop_pids() {
    local pid
    for pid in "$@"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        # Bounded wait: SIGKILL whatever is still there after 10 s.
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

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

kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
now() { date +%s.%N; }
lines() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# "SELF CHILDREN" CPU seconds of PID: utime + stime, and cutime + cstime (the children it
# reaped), fields 14-17 of /proc/PID/stat (counted after the command name, which may hold spaces).
cpu_split() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz, ($14 + $15) / hz }' "/proc/$1/stat"; }
# Both of cpu_split summed.
cpu_s() { cpu_split "$1" | awk '{ print $1 + $2 }'; }
# per_run_ms A B N: (B - A) / N in milliseconds.
per_run_ms() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.3f", (n > 0 ? 1000 * (b - a) / n : 0) }'; }
# Every CPU's ticks but idle and iowait, and all ticks, summed over the CPUs (guest time is
# already in user time: left out).
busy_cpus() {
    awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; printf "%.2f %.2f\n", (t - $5 - $6) / hz, t / hz }' /proc/stat
}

# --- the receiver load ---------------------------------------------------------------------

# wrk_script FILE: writes the wrk script that posts the fixture (BENCH_BODY) with a fingerprint
# of its own per request (BENCH_ROUND, BENCH_SOURCE: which of several parallel wrk processes,
# the thread and a counter), counts 200 / 503 / other per thread, keeps the run ids untoil
# acknowledged in BENCH_IDS, writes the latency histogram ("microseconds count" lines) to
# BENCH_LATENCY when set (so parallel processes' percentiles can be merged exactly), and prints
# one BENCH line aggregated over the threads (the `threads` pattern of wrk's scripts/setup.lua).
wrk_script() {
    cat >"$1" <<'EOF'
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
  round = tonumber(os.getenv("BENCH_ROUND") or "0")
  source = tonumber(os.getenv("BENCH_SOURCE") or "0")
  n, ok, s503, other, nacked = 0, 0, 0, 0, 0
  acked = {}
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  return wrk.format(nil, nil, nil,
    prefix .. string.format("%02x%02x%02x%010x", round, source, tid, n) .. suffix)
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
  local hist = os.getenv("BENCH_LATENCY")
  if hist and hist ~= "" then
    local h = assert(io.open(hist, "w"))
    for i = 1, #latency do
      local us, count = latency(i)
      h:write(string.format("%d %d\n", us, count))
    end
    h:close()
  end
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
}

# wrk_load URL LOG IDS ROUND SOURCE THREADS CONNECTIONS [LATENCY]: one wrk run of DURATION with
# the script of wrk_script at $TMP/load.lua (written on first use) and FIXTURE as the body; its
# output in LOG, the acknowledged run ids in IDS, the latency histogram in LATENCY when given.
wrk_load() {
    local url=$1 log=$2 ids=$3 round=$4 source=$5 threads=$6 connections=$7 latency=${8:-}
    [[ -f $TMP/load.lua ]] || wrk_script "$TMP/load.lua"
    echo "== round $round: wrk -t$threads -c$connections -d$DURATION $url" >&2
    BENCH_BODY=$FIXTURE BENCH_IDS=$ids BENCH_ROUND=$round BENCH_SOURCE=$source BENCH_LATENCY=$latency \
        wrk -t"$threads" -c"$connections" -d"$DURATION" --timeout 10s -s "$TMP/load.lua" "$url" >"$log" 2>&1 ||
        { cat "$log" >&2; die "wrk failed"; }
    grep -q '^BENCH ' "$log" || { cat "$log" >&2; die "wrk printed no BENCH line"; }
}

# wrk_fields LOG NAME: the BENCH line's fields of LOG into the associative array named NAME.
wrk_fields() {
    local -n _wf=$2
    local kv kvs
    read -ra kvs < <(grep '^BENCH ' "$1" | cut -d' ' -f2-)
    for kv in "${kvs[@]}"; do
        # shellcheck disable=SC2034 # _wf is a nameref: the caller's array is written
        _wf[${kv%%=*}]=${kv#*=}
    done
}

# untoil_serve DIR OUT [ARG...]: under DIR, the runbook `bench` whose only step appends the
# alert's fingerprint to OUT; starts `untoil serve` on a free loopback port with DIR's runbooks,
# plugins and data, --queue-capacity QUEUE_CAPACITY (large: measure acceptance), --workers
# WORKERS when set, and ARGs; waits until it answers with the runbook loaded. Sets SERVED_PID
# (added to PIDS) and SERVED_BASE. The environment's untoil settings are left out, so that only
# these arguments decide.
untoil_serve() {
    local dir=$1 out=$2
    shift 2
    mkdir -p "$dir/runbooks" "$dir/plugins" "$dir/data"
    # The fingerprint is shell-quoted by untoil's templating: written bare on purpose.
    cat >"$dir/runbooks/bench.yaml" <<EOF
name: bench
owner: bench
toil:
  manual_minutes: 1
triggers:
  - alert:
      matchers: ['alertname="DiskFull"']
steps:
  - name: append
    run: "printf '%s\\\\n' {{alert.fingerprint}} >> $out"
EOF
    local port
    port=$(free_port)
    SERVED_BASE=http://127.0.0.1:$port
    local args=(--runbooks "$dir/runbooks" --plugins "$dir/plugins" --data "$dir/data"
        serve --listen "127.0.0.1:$port" --queue-capacity "$QUEUE_CAPACITY")
    [[ -n ${WORKERS:-} ]] && args+=(--workers "$WORKERS")
    env -u UNTOIL_TOKEN -u UNTOIL_TOKEN_FILE -u UNTOIL_BASIC_AUTH -u UNTOIL_BASIC_AUTH_FILE \
        -u UNTOIL_AUTH_FILE -u UNTOIL_WORKERS -u UNTOIL_QUEUE_CAPACITY -u UNTOIL_SERVER -u UNTOIL_DATABASE_URL \
        -u UNTOIL_DATABASE_PASSWORD_FILE -u UNTOIL_DATABASE_POOL -u UNTOIL_LEASE_TTL -u PGPASSWORD \
        "$UNTOIL" "${args[@]}" "$@" >"$dir/untoil.log" 2>&1 &
    SERVED_PID=$!
    PIDS+=("$SERVED_PID")
    wait_http "$SERVED_BASE/healthz" "$SERVED_PID" 30
    curl -fsS "$SERVED_BASE/api/v1/runbooks/bench" >/dev/null || die "runbook bench not loaded; see $dir/untoil.log"
}

# untoil_drain BASE OUT ACKED_N: prints 1 once every run accepted by the daemon at BASE (on a
# database: by the whole fleet) has finished, 0 if DRAIN_TIMEOUT seconds pass first. Polls the
# output file first (cheap: a line per executed run) until it could hold the ACKED_N
# acknowledged runs, then the run list's status filter, which also sees runs accepted after wrk
# stopped counting.
untoil_drain() {
    local base=$1 out=$2 acked_n=$3 deadline=$((SECONDS + DRAIN_TIMEOUT)) q r
    while ((SECONDS < deadline)); do
        (($(lines "$out") >= acked_n)) && break
        sleep 0.2
    done
    while ((SECONDS < deadline)); do
        q=$(curl -fsS "$base/api/v1/runs?status=queued&limit=1")
        r=$(curl -fsS "$base/api/v1/runs?status=running&limit=1")
        if [[ $q == "[]" && $r == "[]" ]]; then echo 1; return; fi
        sleep 0.2
    done
    echo 0
}

# untoil_account BASE ACKED OUT: prints "missing doubled": how many of the runs untoil
# acknowledged (their ids in ACKED) have no line of their alert's fingerprint in OUT, and how
# many lines of OUT repeat one. The run list (every run, as summaries, which carry each run's
# fingerprint) is read from BASE into ACKED.runs.json.
untoil_account() {
    curl -fsS "$1/api/v1/runs?limit=0" >"$2.runs.json"
    python3 - "$2.runs.json" "$2" "$3" <<'EOF'
import json, sys
from collections import Counter
runs = {r["id"]: r for r in json.load(open(sys.argv[1]))}
acked = {l.strip() for l in open(sys.argv[2]) if l.strip()}
try:
    written = Counter(l.strip() for l in open(sys.argv[3]) if l.strip())
except FileNotFoundError:
    written = Counter()
fps = {(runs.get(i, {}).get("cause") or {}).get("fingerprint") or f"?{i}" for i in acked}
print(sum(1 for f in fps if written[f] == 0), sum(c - 1 for c in written.values() if c > 1))
EOF
}

# webhook_serve DIR OUT: starts adnanh/webhook on a free loopback port with a hook that runs the
# same shell as untoil's step, `/bin/sh -c 'printf "%s\n" "$1" >> OUT' sh FINGERPRINT` (the
# fingerprint passed as an argument from the payload's alerts.0.fingerprint), and answers after
# it ends (include-command-output-in-response). Sets SERVED_PID (added to PIDS) and SERVED_BASE
# (the hook's URL).
webhook_serve() {
    local dir=$1 out=$2
    mkdir -p "$dir"
    cat >"$dir/hooks.json" <<EOF
[
  {
    "id": "alert",
    "execute-command": "/bin/sh",
    "include-command-output-in-response": true,
    "pass-arguments-to-command": [
      { "source": "string", "name": "-c" },
      { "source": "string", "name": "printf '%s\\\\n' \"\$1\" >> $out" },
      { "source": "string", "name": "sh" },
      { "source": "payload", "name": "alerts.0.fingerprint" }
    ]
  }
]
EOF
    local port
    port=$(free_port)
    webhook -hooks "$dir/hooks.json" -ip 127.0.0.1 -port "$port" >"$dir/webhook.log" 2>&1 &
    SERVED_PID=$!
    PIDS+=("$SERVED_PID")
    # webhook has no health endpoint: `/` answers 200 "OK" once it listens.
    wait_http "http://127.0.0.1:$port/" "$SERVED_PID" 30
    SERVED_BASE=http://127.0.0.1:$port/hooks/alert
}
