#!/usr/bin/env bash
# Amplification benchmark (issue 16): what one big Alertmanager notification costs untoil.
#
# Builds the 905 KB body of issue 16 from the real firing fixture: its `commonAnnotations` get
# a 900 KiB annotation `big`, and its alert is repeated 50 times, each with a fingerprint and an
# `instance` label of its own (as tests/suite/daemon.rs
# `a_fifty_run_list_stays_small_while_each_run_keeps_its_900_kb_annotation` does), so one post
# makes 50 runs. Each round starts a fresh `untoil serve` (fresh temp store, loopback only) with
# one runbook `amp` matching the fixture's alerts (alertname DiskFull) whose only step is a quick
# shell (`echo fixing {{alert.labels.instance}}`), posts the body once with curl, polls the API
# (with a deadline) until all 50 runs have finished, and prints:
#   - the body's size;
#   - the store's size (`du -sb` of the data dir) before the post, after the 50 runs finished
#     (daemon still up) and after the daemon stopped (sled may compact or flush on close), the
#     growth, and growth / body size against the goal: at most 2x the body;
#   - the daemon's peak RSS (VmHWM of /proc/PID/status, the kernel's high-water mark, read once
#     the runs finished and again after the list below, so nothing between samples is missed)
#     against the goal: under 100 MB;
#   - the size of the answer to `GET /api/v1/runs?limit=50` against the goal: under 1 MB.
# With ROUNDS > 1 it repeats all of it with a fresh daemon and store each round and prints the
# median of each figure. A benchmark, not a test: it exits non-zero only when the run accounting
# fails (a round did not get 50 accepted runs that all finished `succeeded` in time), never
# because a goal is missed.
#
# Goals (issue 16, "The hot path"): "The 905 KB body above grows the store by at most twice its
# size; daemon memory stays under 100 MB through it; a 50-run list answer stays under 1 MB."
# Measured when the issue was filed: the store grew from 7.9 MB to 525 MB, the daemon reached
# 413 MB and the list answer was 45 MB.
# At 147a578 (run summaries already in, 2 CPUs shared with other builds, ROUNDS=3): body
# 938,181 bytes; store 0.01 MB -> 590 MB (629x the body; the same after the daemon stopped);
# peak RSS 367 MiB; the list answer 37 KB; all 50 runs finished 2 s after the post.
#
# Usage: bash benches/amplification.sh
#        SKIP_BUILD=1 ROUNDS=3 bash benches/amplification.sh
# Environment (all optional):
#   ROUNDS=1                                fresh daemon + store per round; medians printed
#   ALERTS=50                               alerts (runs) in the one notification
#   ANNOTATION_KIB=900                      size of commonAnnotations.big
#   WORKERS=<n>                             untoil --workers (default: untoil's, 2 x CPUs)
#   DRAIN_TIMEOUT=300                       seconds to wait for the runs to finish
#   STOP_TIMEOUT=60                         seconds to wait for the daemon to exit on SIGTERM
#   UNTOIL_LOG=warn                         untoil log filter
#   FIXTURE=tests/fixtures/alertmanager/firing.json
#   SKIP_BUILD=1                            use the existing target/release/untoil
#   KEEP=1                                  keep the temp dir (body, logs, stores)
# Requires: cargo (unless SKIP_BUILD), python3, curl. Takes a few seconds per round on today's
# store (longer on a store that copies the notification into every run record).

set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-1}
ALERTS=${ALERTS:-50}
ANNOTATION_KIB=${ANNOTATION_KIB:-900}
WORKERS=${WORKERS:-}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}
STOP_TIMEOUT=${STOP_TIMEOUT:-60}
FIXTURE=${FIXTURE:-tests/fixtures/alertmanager/firing.json}
export UNTOIL_LOG=${UNTOIL_LOG:-warn}

# shellcheck source=benches/lib.sh
source benches/lib.sh
BENCH_NAME=amplification
for tool in python3 curl du; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -f $FIXTURE ]] || die "fixture $FIXTURE not found"

bench_setup amplification

size() { du -sb "$1" | cut -f1; }

# --- the body ------------------------------------------------------------------------------
BODY=$TMP/body.json
python3 - "$FIXTURE" "$BODY" "$ALERTS" "$ANNOTATION_KIB" <<'EOF'
import copy, json, sys
fixture, out, n, kib = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = json.load(open(fixture))
alert = body["alerts"][0]
alerts = []
for i in range(n):
    a = copy.deepcopy(alert)
    a["fingerprint"] = f"big{i:04d}"
    a["labels"]["instance"] = f"db-{i}"
    alerts.append(a)
body["alerts"] = alerts
body["commonAnnotations"]["big"] = "x" * (kib * 1024)
with open(out, "w") as f:
    json.dump(body, f, separators=(",", ":"))
EOF
BODY_BYTES=$(stat -c %s "$BODY")
# Room for the body whatever its size (--body-limit defaults to 1 MiB).
BODY_LIMIT=$((BODY_BYTES > 1048576 ? BODY_BYTES + 65536 : 1048576))

# One line per round: round body store0 store_done store_stopped peak_kib_done peak_kib
# list_bytes accepted succeeded seconds loadavg
RESULTS=$TMP/rounds.tsv
: >"$RESULTS"

one_round() {
    local round=$1 dir=$TMP/round-$1
    mkdir -p "$dir/runbooks" "$dir/plugins" "$dir/data"
    cat >"$dir/runbooks/amp.yaml" <<'EOF'
name: amp
owner: bench
toil:
  manual_minutes: 1
triggers:
  - alert:
      matchers: ['alertname="DiskFull"']
steps:
  - name: fix
    run: echo fixing {{alert.labels.instance}}
EOF
    local port base
    port=$(free_port)
    base=http://127.0.0.1:$port
    local args=(--runbooks "$dir/runbooks" --plugins "$dir/plugins" --data "$dir/data"
        serve --listen "127.0.0.1:$port" --body-limit "$BODY_LIMIT")
    [[ -n $WORKERS ]] && args+=(--workers "$WORKERS")
    env -u UNTOIL_TOKEN -u UNTOIL_TOKEN_FILE -u UNTOIL_BASIC_AUTH -u UNTOIL_BASIC_AUTH_FILE \
        -u UNTOIL_AUTH_FILE -u UNTOIL_WORKERS -u UNTOIL_QUEUE_CAPACITY \
        "$UNTOIL" "${args[@]}" >"$dir/untoil.log" 2>&1 &
    local upid=$!
    PIDS+=("$upid")
    wait_http "$base/healthz" "$upid" 30
    curl -fsS "$base/api/v1/runbooks/amp" >/dev/null || die "runbook amp not loaded; see $dir/untoil.log"

    local loadavg store0 t0 t1
    loadavg=$(cut -d' ' -f1 /proc/loadavg)
    store0=$(size "$dir/data")
    echo "== round $round: POST $BODY_BYTES bytes ($ALERTS alerts) to $base/api/v1/alerts/alertmanager" >&2
    t0=$(now)
    curl -fsS --max-time 120 -H 'Content-Type: application/json' --data-binary "@$BODY" \
        "$base/api/v1/alerts/alertmanager" >"$dir/answer.json" ||
        die "the post failed; see $dir/untoil.log"
    local accepted
    accepted=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["accepted"]))' "$dir/answer.json")

    # Finished = no run of `amp` queued or running, polled with a deadline (the status filter
    # answers summaries: small whatever the records hold).
    local deadline=$((SECONDS + DRAIN_TIMEOUT)) q r drained=0
    while ((SECONDS < deadline)); do
        kill -0 "$upid" 2>/dev/null || die "untoil (pid $upid) exited; see $dir/untoil.log"
        q=$(curl -fsS --max-time 30 "$base/api/v1/runs?runbook=amp&status=queued&limit=1")
        r=$(curl -fsS --max-time 30 "$base/api/v1/runs?runbook=amp&status=running&limit=1")
        if [[ $q == "[]" && $r == "[]" ]]; then drained=1; break; fi
        sleep 0.2
    done
    t1=$(now)
    ((drained)) || echo "round $round: runs still queued or running after $DRAIN_TIMEOUT s" >&2
    local store_done peak_done list_bytes peak succeeded
    store_done=$(size "$dir/data")
    peak_done=$(kib "$upid" VmHWM)
    list_bytes=$(curl -fsS --max-time 120 -o "$dir/list.json" -w '%{size_download}' "$base/api/v1/runs?limit=50")
    peak=$(kib "$upid" VmHWM)
    succeeded=$(curl -fsS --max-time 120 "$base/api/v1/runs?runbook=amp&status=succeeded&limit=0" |
        python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')

    # Stop (SIGTERM: a clean close) and measure the store once more.
    kill -TERM "$upid"
    deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$upid" 2>/dev/null; do
        ((SECONDS < deadline)) || die "untoil (pid $upid) still up $STOP_TIMEOUT s after SIGTERM"
        sleep 0.1
    done
    wait "$upid" 2>/dev/null || true
    local store_stopped
    store_stopped=$(size "$dir/data")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$BODY_BYTES" "$store0" \
        "$store_done" "$store_stopped" "$peak_done" "$peak" "$list_bytes" "$accepted" \
        "$succeeded" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
        "$loadavg" >>"$RESULTS"
}

for ((round = 1; round <= ROUNDS; round++)); do
    one_round "$round"
done

# --- summary -------------------------------------------------------------------------------
echo
echo "== amplification: $ROUNDS round(s), one notification of $ALERTS alerts with a $ANNOTATION_KIB KiB commonAnnotation, $(nproc) CPUs, store on $(df -T "$TMP" | awk 'NR == 2 { print $2 }'), untoil workers ${WORKERS:-default 2 x CPUs}"
python3 - "$RESULTS" "$ALERTS" <<'EOF'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
alerts = int(sys.argv[2])
MB = 1e6
print(f"{'round':>5} {'body MB':>8} {'store0 MB':>9} {'done MB':>8} {'stopped MB':>10} "
      f"{'growth x':>8} {'stopped x':>9} {'RSS MiB':>8} {'list MB':>8} {'runs':>9} {'s':>6} {'load':>5}")
figs = {k: [] for k in ("growth", "growth_stopped", "ratio", "ratio_stopped", "peak", "peak_done", "list", "secs", "store0")}
bad = 0
for f in rows:
    rnd, body, s0, sd, ss, pd, pk, lb, acc, ok, secs, load = f
    body, s0, sd, ss, pd, pk, lb = map(int, (body, s0, sd, ss, pd, pk, lb))
    g, gs = sd - s0, ss - s0
    figs["store0"].append(s0)
    figs["growth"].append(g)
    figs["growth_stopped"].append(gs)
    figs["ratio"].append(g / body)
    figs["ratio_stopped"].append(gs / body)
    figs["peak"].append(pk)
    figs["peak_done"].append(pd)
    figs["list"].append(lb)
    figs["secs"].append(float(secs))
    runs_ok = acc == str(alerts) and ok == str(alerts)
    bad += not runs_ok
    print(f"{rnd:>5} {body / MB:>8.3f} {s0 / MB:>9.2f} {sd / MB:>8.2f} {ss / MB:>10.2f} {g / body:>8.2f} "
          f"{gs / body:>9.2f} {pk / 1024:>8.1f} {lb / MB:>8.3f} {ok + '/' + acc:>9} {secs:>6} {load:>5}")
med = {k: statistics.median(v) for k, v in figs.items()}
body = int(rows[0][1])
verdict = lambda ok: "meets the goal" if ok else "MISSES the goal"
print()
print(f"median over {len(rows)} round(s):")
print(f"  body: {body} bytes ({body / MB:.3f} MB)")
print(f"  store growth, runs finished: {med['growth'] / MB:.2f} MB = {med['ratio']:.2f}x the body "
      f"(goal <= 2x: {verdict(med['ratio'] <= 2)}); store before: {med['store0'] / MB:.2f} MB")
print(f"  store growth, daemon stopped: {med['growth_stopped'] / MB:.2f} MB = {med['ratio_stopped']:.2f}x the body "
      f"(goal <= 2x: {verdict(med['ratio_stopped'] <= 2)})")
print(f"  daemon peak RSS (VmHWM): {med['peak'] / 1024:.1f} MiB = {med['peak'] * 1024 / MB:.1f} MB "
      f"(goal < 100 MB: {verdict(med['peak'] * 1024 < 100 * MB)}); {med['peak_done'] / 1024:.1f} MiB before the list")
print(f"  GET /api/v1/runs?limit=50: {med['list']:.0f} bytes = {med['list'] / MB:.3f} MB "
      f"(goal < 1 MB: {verdict(med['list'] < MB)})")
print(f"  post to all {alerts} runs finished: {med['secs']:.2f} s")
print(f"runs accounted for ({alerts} accepted, {alerts} succeeded, every round): {'ok' if bad == 0 else f'FAIL in {bad} round(s)'}")
sys.exit(1 if bad else 0)
EOF
