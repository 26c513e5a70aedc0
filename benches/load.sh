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
# run (`write_bytes` of /proc/PID/io, load start to drain end, over the runs executed; and what
# the store's block device received over the same span, every writer on it counted), peak RSS
# (VmHWM) and 0 lost / 0 doubled: every fingerprint untoil acknowledged is in its output file
# exactly once. For both sides, CPU per executed run over the same span: the server's own
# (utime + stime of /proc/PID/stat) and its steps' (the children it reaped: the same work on both
# sides, so "server / steps" is a figure this noisy box's speed cancels out of), and the median
# ratio of the servers' own CPU per run. A benchmark, not a test: it exits non-zero only when the
# run accounting fails.
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

# write_bytes of PID so far (bytes it caused to be written to storage). The kernel adds the
# children it reaped: the steps' appends, which dirty the output file's last page about once per
# writeback, ~20 bytes per run measured (2,000 `sh -c 'printf ... >> FILE'`), noise here.
write_bytes() { awk '$1 == "write_bytes:" { print $2 }' "/proc/$1/io"; }

# Bytes written so far to the block device holding DIR (sectors written, /sys/class/block/DEV/stat),
# or nothing when that is not a block device (tmpfs, overlay). A second view of the same span:
# write_bytes counts a whole page-cache folio each time a write dirties it (again after each
# sync), the device what reached it from every writer on it, so it is only meaningful on an
# otherwise idle machine. On kernels whose page cache uses large folios for the store's file
# system (ext4 on Linux 6.18 here), a folio is as large as the write that created it: after a
# 64 KiB write and a sync, a 100-byte write into it counts 65,536 in write_bytes (4,096 after
# 4 KiB writes; python, pwrite + fdatasync), while the device receives the dirty 4 KiB blocks.
# sled's log is written by buffers of a few to a few hundred KiB, each flush dirtying the
# folio the last one ended in again, so write_bytes reads about twice the device's bytes there.
device_bytes() {
    local dev
    dev=$(basename "$(findmnt -no SOURCE -T "$1" 2>/dev/null)" 2>/dev/null) || return 0
    [[ -n $dev && -r /sys/class/block/$dev/stat ]] || return 0
    awk '{ print $7 * 512 }' "/sys/class/block/$dev/stat"
}

# Runs wrk against URL for round $3; leaves its BENCH line's fields in the associative array
# named by $2 (the acknowledged run ids in $TMP/acked-$2-$3.txt).
run_wrk() {
    local url=$1 name=$2 round=$3
    local -n fields=$2
    # shellcheck disable=SC2034 # a nameref: the caller's array is written
    fields=([loadavg]=$(cut -d' ' -f1 /proc/loadavg))
    wrk_load "$url" "$TMP/wrk-$name-$round.txt" "$TMP/acked-$name-$round.txt" "$round" 0 "$THREADS" "$CONNECTIONS"
    wrk_fields "$TMP/wrk-$name-$round.txt" "$name"
}

# One line per side and round: side round accepted_s executed_s p50_us p99_us bytes_per_run
# peak_kib acked missing doubled drained loadavg self_ms_per_run steps_ms_per_run
# device_bytes_per_run
RESULTS=$TMP/rounds.tsv
: >"$RESULTS"

# --- untoil --------------------------------------------------------------------------------
untoil_round() {
    local round=$1 dir=$TMP/untoil-$1
    local out=$dir/out.txt
    untoil_serve "$dir" "$out"
    local upid=$SERVED_PID base=$SERVED_BASE

    local -A U=()
    local wb0 db0 t0 t1 self0 kids0 self1 kids1
    wb0=$(write_bytes "$upid")
    db0=$(device_bytes "$dir")
    read -r self0 kids0 < <(cpu_split "$upid")
    t0=$(now)
    run_wrk "$base/api/v1/alerts/alertmanager" U "$round"
    local acked_n drained
    acked_n=$(lines "$TMP/acked-U-$round.txt")
    drained=$(untoil_drain "$base" "$out" "$acked_n")
    t1=$(now)
    local wb1 db1 peak executed missing doubled
    wb1=$(write_bytes "$upid")
    db1=$(device_bytes "$dir")
    read -r self1 kids1 < <(cpu_split "$upid")
    peak=$(kib "$upid" VmHWM)
    executed=$(lines "$out")
    read -r missing doubled < <(untoil_account "$base" "$TMP/acked-U-$round.txt" "$out")
    stop_pids "$upid"
    local span
    span=$(secs "$t0" "$t1")
    printf 'untoil\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" \
        "$(rate "${U[ok]}" "$(awk -v us="${U[duration_us]}" 'BEGIN { print us / 1e6 }')")" \
        "$(rate "$executed" "$span")" "${U[p50_us]}" "${U[p99_us]}" \
        "$(awk -v a="$wb0" -v b="$wb1" -v n="$executed" 'BEGIN { printf "%.0f", (n > 0 ? (b - a) / n : 0) }')" \
        "$peak" "$acked_n" "$missing" "$doubled" "$drained" "${U[loadavg]}" \
        "$(per_run_ms "$self0" "$self1" "$executed")" "$(per_run_ms "$kids0" "$kids1" "$executed")" \
        "$(if [[ -n $db0 && -n $db1 ]]; then awk -v a="$db0" -v b="$db1" -v n="$executed" 'BEGIN { printf "%.0f", (n > 0 ? (b - a) / n : 0) }'; else echo -; fi)" >>"$RESULTS"
}

# --- webhook -------------------------------------------------------------------------------
webhook_round() {
    local round=$1 dir=$TMP/webhook-$1
    local out=$dir/out.txt
    webhook_serve "$dir" "$out"
    local wpid=$SERVED_PID
    local -A W=()
    local t0 t1 self0 kids0 self1 kids1
    read -r self0 kids0 < <(cpu_split "$wpid")
    t0=$(now)
    run_wrk "$SERVED_BASE" W "$round"
    # It answers after the command ends: drained when wrk is done.
    t1=$(now)
    read -r self1 kids1 < <(cpu_split "$wpid")
    local peak executed
    peak=$(kib "$wpid" VmHWM)
    executed=$(lines "$out")
    stop_pids "$wpid"
    printf 'webhook\t%s\t%s\t%s\t%s\t%s\t-\t%s\t%s\t-\t-\t1\t%s\t%s\t%s\t-\n' "$round" \
        "$(rate "${W[ok]}" "$(awk -v us="${W[duration_us]}" 'BEGIN { print us / 1e6 }')")" \
        "$(rate "$executed" "$(secs "$t0" "$t1")")" "${W[p50_us]}" "${W[p99_us]}" \
        "$peak" "${W[ok]}" "${W[loadavg]}" \
        "$(per_run_ms "$self0" "$self1" "$executed")" "$(per_run_ms "$kids0" "$kids1" "$executed")" >>"$RESULTS"
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
      f"{'B written/run':>13} {'disk B/run':>10} {'peak RSS MiB':>12} {'acked':>7} {'missing':>7} {'doubled':>7} {'drained':>7} {'loadavg':>7} "
      f"{'CPU ms/run':>10} {'steps ms/run':>12} {'CPU/steps':>9}")
ratios = {k: [] for k in ("accepted/s", "executed/s", "ack p50", "ack p99", "CPU/run")}
bad = 0
for r in rounds:
    for side in ("untoil", "webhook"):
        f = rows.get((side, r))
        if not f:
            continue
        peak = f"{int(f[7]) / 1024:.1f}" if f[7].isdigit() else "-"
        per = ratio(f[13], f[14])
        print(f"{r:>5} {side:8} {f[2]:>10} {f[3]:>10} {int(f[4]) / 1000:>10.2f} {int(f[5]) / 1000:>10.2f} "
              f"{f[6]:>13} {f[15]:>10} {peak:>12} {f[8]:>7} {f[9]:>7} {f[10]:>7} {'yes' if f[11] == '1' else 'NO':>7} {f[12]:>7} "
              f"{f[13]:>10} {f[14]:>12} {'n/a' if per is None else f'{per:.2f}':>9}")
        if side == "untoil" and (f[9] != "0" or f[10] != "0" or f[11] != "1"):
            bad += 1
    u, w = rows.get(("untoil", r)), rows.get(("webhook", r))
    if u and w:
        got = [ratio(u[2], w[2]), ratio(u[3], w[3]), ratio(u[4], w[4]), ratio(u[5], w[5]), ratio(u[13], w[13])]
        for k, v in zip(ratios, got):
            if v is not None:
                ratios[k].append(v)
        print(f"{r:>5} {'ratio':8} {fmt(got[0]):>10} {fmt(got[1]):>10} {fmt(got[2]):>10} {fmt(got[3]):>10} "
              f"{'':>13} {'':>10} {'':>12} {'':>7} {'':>7} {'':>7} {'':>7} {'':>7} {fmt(got[4]):>10}")
print()
print("median over rounds, untoil/webhook (ack latency and the server's own CPU per run: lower is better for untoil):")
for k, v in ratios.items():
    print(f"  {k:12} {fmt(statistics.median(v)) if v else 'n/a'}  (rounds: {', '.join(fmt(x) for x in v) or '-'})")
us = [rows[k] for k in rows if k[0] == "untoil"]
if us:
    disk = [float(f[15]) for f in us if f[15] != "-"]
    print(f"  untoil bytes written per run: median {statistics.median(float(f[6]) for f in us):.0f} (write_bytes), "
          f"{f'{statistics.median(disk):.0f}' if disk else 'n/a'} (the store's disk); "
          f"peak RSS: max {max(int(f[7]) for f in us) / 1024:.1f} MiB")
print(f"runs complete and accounted for (0 missing, 0 doubled, drained): {'ok' if bad == 0 else f'FAIL in {bad} round(s)'}")
sys.exit(1 if bad else 0)
EOF
