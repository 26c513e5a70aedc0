#!/usr/bin/env bash
# Load benchmark of the Alertmanager receiver: untoil serve vs adnanh/webhook, the same work.
#
# Posts the real firing fixture with wrk, each request carrying a fingerprint of its own (so
# every request is a new alert; identical payloads would rightly be deduplicated), to:
#   1. `untoil serve` with one runbook `bench` whose only step is a shell that appends the
#      alert's fingerprint to a file: `printf '%s\n' {{alert.fingerprint}} >> FILE`;
#   2. `webhook` (adnanh/webhook, Debian package `webhook`) with a hook that runs the same shell,
#      `/bin/sh -c 'printf "%s\n" "$1" >> FILE' sh FINGERPRINT` (the fingerprint passed as an
#      argument from the payload's alerts.0.fingerprint), and waits for it
#      (include-command-output-in-response: true);
# same payload, same load, same machine, loopback only. The two alternate in ROUNDS interleaved
# rounds (untoil, webhook, untoil, ...; a fresh store and output file each round), so a slow
# patch of a busy machine hurts both sides rather than one. Per round and as the MEDIAN over
# the rounds of each ratio untoil/webhook it prints: accepted/s, executed/s (lines in the
# output file once the side has drained: for untoil, once every accepted run has finished,
# polled through the API with a deadline), ack p50 and p99; and for untoil the bytes written per
# run (`write_bytes` of /proc/PID/io, load start to drain end, over the runs executed), peak RSS
# (VmHWM) and 0 lost / 0 doubled: every fingerprint untoil acknowledged is in its output file
# exactly once. A benchmark, not a test: it exits non-zero only when the run accounting fails.
#
# Usage: bash benches/load.sh
# Environment (all optional):
#   ROUNDS=5                                interleaved rounds (untoil then webhook each)
#   DURATION=10s CONNECTIONS=32 THREADS=2   wrk load per round, the same for both servers
#   WORKERS=<n>                             untoil --workers (default: untoil's, 2 x CPUs)
#   QUEUE_CAPACITY=1000000                  untoil --queue-capacity (large: measure acceptance)
#   UNTOIL_LOG=warn                         untoil log filter (info = the daemon's default)
#   DRAIN_TIMEOUT=90                        seconds to wait for every accepted run to finish
#   FIXTURE=tests/fixtures/alertmanager/firing.json
#   SKIP_BUILD=1                            use the existing target/release/untoil
#   UNTOIL_BIN=PATH                         the untoil binary to measure (default target/release/untoil)
#   SKIP_WEBHOOK=1                          untoil only (no ratios)
#   KEEP=1                                  keep the temp dir (logs, stores, outputs, wrk output)
# Requires: cargo, wrk, webhook, python3, curl. Takes about ROUNDS x (2 x DURATION + untoil's
# drain + a few seconds of start-up) after the build.

set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-}
QUEUE_CAPACITY=${QUEUE_CAPACITY:-1000000}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-90}
FIXTURE=${FIXTURE:-tests/fixtures/alertmanager/firing.json}
export UNTOIL_LOG=${UNTOIL_LOG:-warn}

# shellcheck source=benches/lib.sh
source benches/lib.sh
BENCH_NAME=load
for tool in wrk webhook python3 curl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install wrk webhook python3 curl)"
done
[[ -f $FIXTURE ]] || die "fixture $FIXTURE not found"
FIXTURE=$(cd "$(dirname "$FIXTURE")" && pwd)/$(basename "$FIXTURE")

bench_setup load

# CPU seconds of PID and its waited-for children (utime + stime + cutime + cstime).
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13 + $14 + $15) / hz }' "/proc/$1/stat"; }

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# write_bytes of PID so far (bytes it caused to be written to storage, children it waited for
# not included: the steps' appends are the same on both sides).
write_bytes() { awk '$1 == "write_bytes:" { print $2 }' "/proc/$1/io"; }
lines() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }

# --- fixtures ------------------------------------------------------------------------------
# wrk script: the fixture with a unique fingerprint per request (round + thread id + counter);
# counts 200 / 503 / other per thread, keeps the run ids untoil acknowledged, and done()
# aggregates over the threads (the `threads` table pattern of wrk's scripts/setup.lua).
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
  round = tonumber(os.getenv("BENCH_ROUND") or "0")
  n, ok, s503, other, nacked = 0, 0, 0, 0, 0
  acked = {}
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  return wrk.format(nil, nil, nil, prefix .. string.format("%02x%02x%012x", round, tid, n) .. suffix)
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

# Runs wrk against URL for round $3; leaves its BENCH line's fields in the associative array
# named by $2 (the acknowledged run ids in $TMP/acked-$2-$3.txt).
run_wrk() {
    local url=$1 name=$2 round=$3 log=$TMP/wrk-$2-$3.txt
    echo "== round $round: wrk -t$THREADS -c$CONNECTIONS -d$DURATION $url" >&2
    LOADAVG=$(cut -d' ' -f1 /proc/loadavg)
    BENCH_BODY=$FIXTURE BENCH_IDS=$TMP/acked-$name-$round.txt BENCH_ROUND=$round \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 10s -s "$TMP/load.lua" "$url" >"$log" 2>&1 ||
        { cat "$log" >&2; die "wrk failed"; }
    grep -q '^BENCH ' "$log" || { cat "$log" >&2; die "wrk printed no BENCH line"; }
    local -n fields=$2
    local kv
    fields=()
    fields[loadavg]=$LOADAVG
    for kv in $(grep '^BENCH ' "$log" | cut -d' ' -f2-); do
        fields[${kv%%=*}]=${kv#*=}
    done
}

rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# One line per side and round: side round accepted_s executed_s p50_us p99_us bytes_per_run
# peak_kib acked missing doubled drained loadavg
RESULTS=$TMP/rounds.tsv
: >"$RESULTS"

# --- untoil --------------------------------------------------------------------------------
untoil_round() {
    local round=$1 dir=$TMP/untoil-$1
    local out=$dir/out.txt
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
    local port base
    port=$(free_port)
    base=http://127.0.0.1:$port
    local args=(--runbooks "$dir/runbooks" --plugins "$dir/plugins" --data "$dir/data"
        serve --listen "127.0.0.1:$port" --queue-capacity "$QUEUE_CAPACITY")
    [[ -n $WORKERS ]] && args+=(--workers "$WORKERS")
    env -u UNTOIL_TOKEN -u UNTOIL_TOKEN_FILE -u UNTOIL_BASIC_AUTH -u UNTOIL_BASIC_AUTH_FILE \
        -u UNTOIL_WORKERS -u UNTOIL_QUEUE_CAPACITY \
        "$UNTOIL" "${args[@]}" >"$dir/untoil.log" 2>&1 &
    local upid=$!
    PIDS+=("$upid")
    wait_http "$base/healthz" "$upid" 30
    curl -fsS "$base/api/v1/runbooks/bench" >/dev/null || die "runbook bench not loaded; see $dir/untoil.log"

    local -A U=()
    local wb0 t0 t1
    wb0=$(write_bytes "$upid")
    t0=$(now)
    run_wrk "$base/api/v1/alerts/alertmanager" U "$round"

    # Drained = every accepted run finished, polled with a deadline: first on the output file
    # (cheap: a line per executed run) until it could hold every acknowledged run, then on the
    # run list's status filter, which also sees runs accepted after wrk stopped counting.
    local acked_n drained=0 deadline=$((SECONDS + DRAIN_TIMEOUT)) q r
    acked_n=$(lines "$TMP/acked-U-$round.txt")
    while ((SECONDS < deadline)); do
        (($(lines "$out") >= acked_n)) && break
        sleep 0.2
    done
    while ((SECONDS < deadline)); do
        q=$(curl -fsS "$base/api/v1/runs?status=queued&limit=1")
        r=$(curl -fsS "$base/api/v1/runs?status=running&limit=1")
        if [[ $q == "[]" && $r == "[]" ]]; then drained=1; break; fi
        sleep 0.2
    done
    t1=$(now)
    local wb1 peak executed
    wb1=$(write_bytes "$upid")
    peak=$(kib "$upid" VmHWM)
    executed=$(lines "$out")
    # The list answers summaries, which carry each run's fingerprint: enough to map the
    # acknowledged run ids to the fingerprints that must be in the output file.
    curl -fsS "$base/api/v1/runs?limit=0" >"$dir/runs.json"
    kill "$upid" 2>/dev/null || true
    local missing doubled
    read -r missing doubled < <(python3 - "$dir/runs.json" "$TMP/acked-U-$round.txt" "$out" <<'EOF'
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
)
    local span
    span=$(secs "$t0" "$t1")
    printf 'untoil\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" \
        "$(rate "${U[ok]}" "$(awk -v us="${U[duration_us]}" 'BEGIN { print us / 1e6 }')")" \
        "$(rate "$executed" "$span")" "${U[p50_us]}" "${U[p99_us]}" \
        "$(awk -v a="$wb0" -v b="$wb1" -v n="$executed" 'BEGIN { printf "%.0f", (n > 0 ? (b - a) / n : 0) }')" \
        "$peak" "$acked_n" "$missing" "$doubled" "$drained" "${U[loadavg]}" >>"$RESULTS"
}

# --- webhook -------------------------------------------------------------------------------
webhook_round() {
    local round=$1 dir=$TMP/webhook-$1
    local out=$dir/out.txt
    mkdir -p "$dir"
    # The same shell and append as untoil's step; the fingerprint comes as an argument.
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
    local wpid=$!
    PIDS+=("$wpid")
    # webhook has no health endpoint: `/` answers 200 "OK" once it listens.
    wait_http "http://127.0.0.1:$port/" "$wpid" 30
    local -A W=()
    local t0 t1
    t0=$(now)
    run_wrk "http://127.0.0.1:$port/hooks/alert" W "$round"
    # It answers after the command ends: drained when wrk is done.
    t1=$(now)
    local peak executed
    peak=$(kib "$wpid" VmHWM)
    executed=$(lines "$out")
    kill "$wpid" 2>/dev/null || true
    printf 'webhook\t%s\t%s\t%s\t%s\t%s\t-\t%s\t%s\t-\t-\t1\t%s\n' "$round" \
        "$(rate "${W[ok]}" "$(awk -v us="${W[duration_us]}" 'BEGIN { print us / 1e6 }')")" \
        "$(rate "$executed" "$(secs "$t0" "$t1")")" "${W[p50_us]}" "${W[p99_us]}" \
        "$peak" "${W[ok]}" "${W[loadavg]}" >>"$RESULTS"
}

for ((round = 1; round <= ROUNDS; round++)); do
    untoil_round "$round"
    [[ -z ${SKIP_WEBHOOK:-} ]] && webhook_round "$round"
done

# --- summary -------------------------------------------------------------------------------
echo
echo "== load: $ROUNDS round(s) of wrk -t$THREADS -c$CONNECTIONS -d$DURATION per side, fixture $(basename "$FIXTURE") with a unique fingerprint per request, $(nproc) CPUs, store on $(df -T "$TMP" | awk 'NR == 2 { print $2 }'); work: sh appends the fingerprint to a file"
echo "   untoil workers ${WORKERS:-default 2 x CPUs}, queue capacity $QUEUE_CAPACITY, UNTOIL_LOG=$UNTOIL_LOG; webhook $(webhook -version 2>&1 | awk '{ print $NF }'). Figures are only comparable on an otherwise idle machine."
python3 - "$RESULTS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    rows[(f[0], int(f[1]))] = f
rounds = sorted({r for _, r in rows})
def num(v):
    try:
        return float(v)
    except ValueError:
        return None
def ratio(a, b):
    a, b = num(a), num(b)
    return a / b if a is not None and b else None
fmt = lambda x: "n/a" if x is None else f"{x:.2f}x"
print(f"{'round':>5} {'side':8} {'accepted/s':>10} {'executed/s':>10} {'ack p50 ms':>10} {'ack p99 ms':>10} "
      f"{'B written/run':>13} {'peak RSS MiB':>12} {'acked':>7} {'missing':>7} {'doubled':>7} {'drained':>7} {'loadavg':>7}")
ratios = {k: [] for k in ("accepted/s", "executed/s", "ack p50", "ack p99")}
bad = 0
for r in rounds:
    for side in ("untoil", "webhook"):
        f = rows.get((side, r))
        if not f:
            continue
        peak = f"{int(f[7]) / 1024:.1f}" if f[7].isdigit() else "-"
        print(f"{r:>5} {side:8} {f[2]:>10} {f[3]:>10} {int(f[4]) / 1000:>10.2f} {int(f[5]) / 1000:>10.2f} "
              f"{f[6]:>13} {peak:>12} {f[8]:>7} {f[9]:>7} {f[10]:>7} {'yes' if f[11] == '1' else 'NO':>7} {f[12]:>7}")
        if side == "untoil" and (f[9] != "0" or f[10] != "0" or f[11] != "1"):
            bad += 1
    u, w = rows.get(("untoil", r)), rows.get(("webhook", r))
    if u and w:
        got = [ratio(u[2], w[2]), ratio(u[3], w[3]), ratio(u[4], w[4]), ratio(u[5], w[5])]
        for k, v in zip(ratios, got):
            if v is not None:
                ratios[k].append(v)
        print(f"{r:>5} {'ratio':8} {fmt(got[0]):>10} {fmt(got[1]):>10} {fmt(got[2]):>10} {fmt(got[3]):>10}")
print()
print("median over rounds, untoil/webhook (ack latency: lower is better for untoil):")
for k, v in ratios.items():
    print(f"  {k:12} {fmt(statistics.median(v)) if v else 'n/a'}  (rounds: {', '.join(fmt(x) for x in v) or '-'})")
us = [rows[k] for k in rows if k[0] == "untoil"]
if us:
    print(f"  untoil bytes written per run: median {statistics.median(float(f[6]) for f in us):.0f}; "
          f"peak RSS: max {max(int(f[7]) for f in us) / 1024:.1f} MiB")
print(f"runs complete and accounted for (0 missing, 0 doubled, drained): {'ok' if bad == 0 else f'FAIL in {bad} round(s)'}")
sys.exit(1 if bad else 0)
EOF
