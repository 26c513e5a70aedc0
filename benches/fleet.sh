#!/usr/bin/env bash
# Fleet throughput benchmark: untoil replicas on PostgreSQL against one untoil on sled and
# adnanh/webhook, the same work and load (the issue "fleet mode on PostgreSQL").
#
# Starts a PostgreSQL cluster of its own (initdb in the temp dir, as the `postgres` account when
# run as root, loopback port, SCRAM password; never the machine's cluster), then in each of ROUNDS
# interleaved rounds (the order rotated each round, so a slow patch of a shared machine does not
# always hurt the same configuration) measures each configuration:
#   - webhook: adnanh/webhook running the same shell as untoil's step and answering after it;
#   - sled: one `untoil serve` on its embedded store;
#   - postgres xN for N in REPLICAS: N `untoil serve` replicas on one fresh database (dropped and
#     created each round), each with its own --listen port and --data dir, the same runbook;
# under the load of benches/load.sh (wrk posting the real firing fixture with a fingerprint of
# its own per request; the step appends the fingerprint to one output file shared by the
# replicas). For N replicas the load is spread over all of them: N wrk processes in parallel,
# each to one replica with its share of CONNECTIONS and THREADS (at least one each), their
# counts summed and their latency histograms merged (exact percentiles, not averaged ones).
# After the load it waits (polling the output file, then the API's run list, with a deadline)
# until every accepted run has finished, and checks 0 lost / 0 doubled: every fingerprint
# acknowledged by any replica is in the output file exactly once. It prints per round and as
# medians over the rounds: accepted/s (200s per second of load), executed/s (lines written from
# load start to drain end), ack p50 and p99, the ratios against webhook and against sled
# (medians of the per-round ratios), the CPU per executed run of the servers (their steps
# included) and of PostgreSQL, and how many CPUs the whole machine kept busy meanwhile (so that
# other work on a shared machine shows). A benchmark, not a test: it exits non-zero only when
# the run accounting fails.
#
# Measured figures, the machine and what they show: docs/fleet.md, "Throughput".
#
# PostgreSQL runs with fsync=PG_FSYNC (default on, as sled flushes each acknowledged write) and
# synchronous_commit=on (untoil's documented requirement); the output says which.
#
# Usage: bash benches/fleet.sh
#        SKIP_BUILD=1 ROUNDS=3 DURATION=10s bash benches/fleet.sh
# Environment (all optional):
#   ROUNDS=3                                interleaved rounds (every configuration once each)
#   REPLICAS="1 2 3"                        replica counts measured on PostgreSQL
#   DURATION=10s CONNECTIONS=32 THREADS=2   wrk load per configuration and round (in total)
#   WORKERS=<n>                             untoil --workers per process (default: untoil's)
#   DATABASE_POOL=<n>                       untoil --database-pool per replica (default: untoil's)
#   QUEUE_CAPACITY=1000000                  untoil --queue-capacity (large: measure acceptance)
#   PG_FSYNC=on                             PostgreSQL fsync (off: no flush to disk at commit)
#   UNTOIL_LOG=warn                         untoil log filter
#   DRAIN_TIMEOUT=180                       seconds to wait for every accepted run to finish
#   FIXTURE=tests/fixtures/alertmanager/firing.json
#   SKIP_BUILD=1                            use the existing target/release/untoil
#   UNTOIL_BIN=PATH                         the untoil binary to measure
#   SKIP_WEBHOOK=1 SKIP_SLED=1              leave that configuration out (no ratios against it)
#   KEEP=1                                  keep the temp dir (logs, outputs, wrk output, cluster)
# Requires: cargo, wrk, webhook, python3, curl, PostgreSQL's server (Debian's postgresql, as
# scripts/test-deps installs it) and runuser when run as root. Takes about ROUNDS x (2 +
# len(REPLICAS)) x (DURATION + drain + start-up) after the build.

set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
REPLICAS=${REPLICAS:-1 2 3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-}
DATABASE_POOL=${DATABASE_POOL:-}
QUEUE_CAPACITY=${QUEUE_CAPACITY:-1000000}
PG_FSYNC=${PG_FSYNC:-on}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-180}
FIXTURE=${FIXTURE:-tests/fixtures/alertmanager/firing.json}
export UNTOIL_LOG=${UNTOIL_LOG:-warn}

# shellcheck source=benches/lib.sh
source benches/lib.sh
BENCH_NAME=fleet
for tool in wrk python3 curl; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install wrk python3 curl)"
done
[[ -n ${SKIP_WEBHOOK:-} ]] || command -v webhook >/dev/null || die "webhook not found (apt-get install webhook)"
[[ -f $FIXTURE ]] || die "fixture $FIXTURE not found"
FIXTURE=$(cd "$(dirname "$FIXTURE")" && pwd)/$(basename "$FIXTURE")
[[ $PG_FSYNC == on || $PG_FSYNC == off ]] || die "PG_FSYNC is on or off, not $PG_FSYNC"
for n in $REPLICAS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "REPLICAS lists replica counts (\"1 2 3\"), not $n"
    ((CONNECTIONS >= n)) || die "CONNECTIONS ($CONNECTIONS) below $n replicas: each needs one"
done
# The newest installed server (Debian: /usr/lib/postgresql/<version>/bin, not on PATH).
PG_BIN=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1)
[[ -n $PG_BIN ]] || die "PostgreSQL's server is missing (/usr/lib/postgresql/<version>/bin/initdb): run scripts/test-deps"
PG_BIN=$(dirname "$PG_BIN")

bench_setup fleet

# --- the PostgreSQL cluster ----------------------------------------------------------------
# initdb refuses root: the cluster is the postgres account's, so it must reach its directory.
as_owner() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }
PG_DIR=$TMP/pg
PG_USER=untoil
PG_PORT=
mkdir -p "$PG_DIR"
if ((EUID == 0)); then
    chmod 711 "$TMP"
    chown postgres: "$PG_DIR"
fi
PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
# untoil reads the password from a file of its own (never on a command line).
printf '%s\n' "$PG_PASSWORD" >"$TMP/db-password"
chmod 600 "$TMP/db-password"
printf '%s' "$PG_PASSWORD" >"$PG_DIR/pwfile"
if ((EUID == 0)); then chown postgres: "$PG_DIR/pwfile"; fi
as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" --auth=scram-sha-256 -E UTF8 \
    --locale=C.UTF-8 --no-instructions --pwfile="$PG_DIR/pwfile" >"$PG_DIR/initdb.log" 2>&1 ||
    { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }

after_stop() {
    if [[ -n $PG_PORT ]]; then
        as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
}

# A port taken and released just before the server binds it may be taken in between: retried.
for _ in 1 2 3 4 5; do
    port=$(free_port)
    if as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 -o \
        "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=$PG_FSYNC -c synchronous_commit=on -c max_connections=200" \
        start >/dev/null 2>&1; then
        PG_PORT=$port
        break
    fi
    grep -q -e 'could not bind' -e 'Address already in use' "$PG_DIR/log" ||
        { cat "$PG_DIR/log" >&2; die "PostgreSQL did not start"; }
done
[[ -n $PG_PORT ]] || die "PostgreSQL found no free port in five tries"

psql_admin() {
    PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=10 PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -At \
        -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -c "$1"
}
deadline=$((SECONDS + 30))
until psql_admin 'SELECT 1' >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { cat "$PG_DIR/log" >&2; die "PostgreSQL answers no query"; }
    sleep 0.1
done
PG_VERSION=$(psql_admin 'SHOW server_version' | cut -d' ' -f1)
PG_SETTINGS=$(psql_admin "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections')")

# CPU seconds of the cluster: the postmaster with the backends it waited for, and the live ones.
pg_cpu() {
    python3 - "$(head -n 1 "$PG_DIR/data/postmaster.pid")" <<'PY'
import os, sys
pm = sys.argv[1]
def fields(pid):
    text = open(f"/proc/{pid}/stat").read()
    return text[text.rindex(")") + 2:].split()
ticks = sum(int(x) for x in fields(pm)[11:15])
for pid in os.listdir("/proc"):
    try:
        f = fields(pid) if pid.isdigit() else None
    except OSError:
        continue
    if f and f[1] == pm:
        ticks += int(f[11]) + int(f[12])
print(ticks / os.sysconf("SC_CLK_TCK"))
PY
}

# CPU seconds of the server PIDs and of their steps (children they waited for).
servers_cpu() {
    local pid sum=0
    for pid in "$@"; do sum=$(awk -v a="$sum" -v b="$(cpu_s "$pid")" 'BEGIN { print a + b }'); done
    echo "$sum"
}

# --- one configuration, one round ----------------------------------------------------------
# The load spread over URLs (one wrk process each, in parallel): THREADS and CONNECTIONS
# divided among them, at least one thread each and as many connections as threads. Leaves
# "accepted_s p50_us p99_us s503 other socket_errors" in LOAD, the acknowledged run ids of all in
# $TMP/acked-NAME-ROUND.txt.
spread_load() {
    local name=$1 round=$2
    shift 2
    local n=$# i=0 url conns threads pids=() logs=() lats=()
    threads=$((THREADS / n))
    ((threads >= 1)) || threads=1
    for url in "$@"; do
        conns=$((CONNECTIONS / n + (i < CONNECTIONS % n ? 1 : 0)))
        ((conns >= threads)) || conns=$threads
        i=$((i + 1))
        logs+=("$TMP/wrk-$name-$round-$i.txt")
        lats+=("$TMP/latency-$name-$round-$i.txt")
        wrk_load "$url" "${logs[-1]}" "$TMP/acked-$name-$round-$i.txt" "$round" "$i" "$threads" "$conns" "${lats[-1]}" &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || die "wrk ($((i + 1)) of $n) failed; see ${logs[$i]}"
    done
    cat "$TMP/acked-$name-$round-"*.txt >"$TMP/acked-$name-$round.txt"
    # wrk's own percentile over the merged histograms: the first latency whose cumulative count
    # reaches round(p% x count + 0.5).
    LOAD=$(python3 - "${logs[@]}" -- "${lats[@]}" <<'PY'
import sys
args = sys.argv[1:]
cut = args.index("--")
logs, lats = args[:cut], args[cut + 1:]
accepted = s503 = other = errors = 0.0
for log in logs:
    line = next(l for l in open(log) if l.startswith("BENCH "))
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    accepted += int(f["ok"]) / (int(f["duration_us"]) / 1e6)
    s503 += int(f["s503"])
    other += int(f["other"])
    errors += sum(int(f[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
hist = {}
for lat in lats:
    for line in open(lat):
        us, count = (int(x) for x in line.split())
        hist[us] = hist.get(us, 0) + count
total = sum(hist.values())
def pct(p):
    rank, seen = round(p / 100 * total + 0.5), 0
    for us in sorted(hist):
        seen += hist[us]
        if seen >= rank:
            return us
    return 0
print(f"{accepted:.0f} {pct(50)} {pct(99)} {s503:.0f} {other:.0f} {errors:.0f}")
PY
)
}

# One line per configuration and round: config round accepted_s executed_s p50_us p99_us acked
# missing doubled drained s503 other socket_errors loadavg server_cpu_ms_per_run
# pg_cpu_ms_per_run busy_cpus
RESULTS=$TMP/rounds.tsv
: >"$RESULTS"

config_round() {
    local config=$1 round=$2 dir=$TMP/$1-$2 loadavg served=() urls=() i
    local out=$dir/out.txt
    mkdir -p "$dir"
    case $config in
        webhook)
            webhook_serve "$dir" "$out"
            served+=("$SERVED_PID")
            urls+=("$SERVED_BASE")
            ;;
        sled)
            untoil_serve "$dir/sled" "$out"
            served+=("$SERVED_PID")
            urls+=("$SERVED_BASE/api/v1/alerts/alertmanager")
            ;;
        pg-*)
            psql_admin 'DROP DATABASE IF EXISTS bench WITH (FORCE)' >/dev/null
            psql_admin 'CREATE DATABASE bench' >/dev/null
            local db=(--database-url "postgres://$PG_USER@127.0.0.1:$PG_PORT/bench"
                --database-password-file "$TMP/db-password")
            [[ -n $DATABASE_POOL ]] && db+=(--database-pool "$DATABASE_POOL")
            for ((i = 1; i <= ${config#pg-}; i++)); do
                untoil_serve "$dir/replica-$i" "$out" "${db[@]}"
                served+=("$SERVED_PID")
                urls+=("$SERVED_BASE/api/v1/alerts/alertmanager")
            done
            ;;
    esac
    local base=${urls[0]%/api/v1/alerts/alertmanager}
    loadavg=$(cut -d' ' -f1 /proc/loadavg)
    local t0 t1 accepted p50 p99 s503 other errors cpu0 cpu1 pg0=0 pg1=0 busy0 busy1
    cpu0=$(servers_cpu "${served[@]}")
    [[ $config == pg-* ]] && pg0=$(pg_cpu)
    busy0=$(busy_cpus)
    t0=$(now)
    spread_load "$config" "$round" "${urls[@]}"
    read -r accepted p50 p99 s503 other errors <<<"$LOAD"
    local acked=$TMP/acked-$config-$round.txt acked_n missing=- doubled=- drained=1
    acked_n=$(lines "$acked")
    if [[ $config != webhook ]]; then
        # Any replica answers for the whole fleet: the run list reads the shared database.
        drained=$(untoil_drain "$base" "$out" "$acked_n")
    else
        # webhook answers after the command ends: drained when wrk is done.
        acked_n=$(awk '/^BENCH / { for (i = 2; i <= NF; i++) if ($i ~ /^ok=/) { sub(/ok=/, "", $i); n += $i } } END { print n + 0 }' "$TMP/wrk-$config-$round-"*.txt)
    fi
    t1=$(now)
    busy1=$(busy_cpus)
    [[ $config == pg-* ]] && pg1=$(pg_cpu)
    cpu1=$(servers_cpu "${served[@]}")
    local executed cpu
    executed=$(lines "$out")
    # CPU milliseconds per executed run of the servers with their steps and of PostgreSQL, and
    # how many CPUs the whole machine kept busy (everything else on it included).
    cpu=$(awk -v n="$executed" -v c0="$cpu0" -v c1="$cpu1" -v p0="$pg0" -v p1="$pg1" -v ncpu="$(nproc)" \
        -v b0="${busy0% *}" -v b1="${busy1% *}" -v a0="${busy0#* }" -v a1="${busy1#* }" \
        'BEGIN { printf "%.2f\t%.2f\t%.2f", (n ? (c1 - c0) * 1000 / n : 0), (n ? (p1 - p0) * 1000 / n : 0), (a1 > a0 ? (b1 - b0) / (a1 - a0) * ncpu : 0) }')
    [[ $config != webhook ]] && read -r missing doubled < <(untoil_account "$base" "$acked" "$out")
    stop_pids "${served[@]}"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$config" "$round" "$accepted" \
        "$(rate "$executed" "$(secs "$t0" "$t1")")" "$p50" "$p99" "$acked_n" "$missing" "$doubled" \
        "$drained" "$s503" "$other" "$errors" "$loadavg" "$cpu" >>"$RESULTS"
}

CONFIGS=()
[[ -z ${SKIP_WEBHOOK:-} ]] && CONFIGS+=(webhook)
[[ -z ${SKIP_SLED:-} ]] && CONFIGS+=(sled)
for n in $REPLICAS; do CONFIGS+=("pg-$n"); done
for ((round = 1; round <= ROUNDS; round++)); do
    for ((k = 0; k < ${#CONFIGS[@]}; k++)); do
        config_round "${CONFIGS[(k + round - 1) % ${#CONFIGS[@]}]}" "$round"
    done
done

# --- summary -------------------------------------------------------------------------------
echo
echo "== fleet: $ROUNDS round(s), each configuration under wrk -t$THREADS -c$CONNECTIONS -d$DURATION in total (spread over the replicas), fixture $(basename "$FIXTURE") with a unique fingerprint per request, $(nproc) CPUs, temp dir on $(df -T "$TMP" | awk 'NR == 2 { print $2 }'); work: sh appends the fingerprint to a file"
echo "   PostgreSQL $PG_VERSION (own cluster, loopback): $PG_SETTINGS; untoil workers ${WORKERS:-default 2 x CPUs} and database pool ${DATABASE_POOL:-default 16} per replica, queue capacity $QUEUE_CAPACITY, UNTOIL_LOG=$UNTOIL_LOG$(command -v webhook >/dev/null && echo "; webhook $(webhook -version 2>&1 | awk '{ print $NF }')")"
echo "   Every process (wrk, the servers, PostgreSQL) shares these CPUs: figures are only comparable on an otherwise idle machine."
python3 - "$RESULTS" "${CONFIGS[@]}" <<'PY'
import statistics, sys
configs = sys.argv[2:]
rows = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    rows[(f[0], int(f[1]))] = f
rounds = sorted({r for _, r in rows})
label = lambda c: {"webhook": "webhook", "sled": "untoil sled x1"}.get(c, f"untoil pg x{c[3:]}")
num = lambda v: float(v) if v not in ("-", "") else None
def ratio(a, b):
    a, b = num(a), num(b)
    return a / b if a is not None and b else None
fmt = lambda x: "-" if x is None else f"{x:.2f}x"
print(f"{'round':>5} {'config':16} {'accepted/s':>10} {'executed/s':>10} {'ack p50 ms':>10} {'ack p99 ms':>10} "
      f"{'acked':>7} {'lost':>5} {'doubled':>7} {'drained':>7} {'503':>5} {'other':>5} {'sockerr':>7} {'loadavg':>7} "
      f"{'srv ms/run':>10} {'pg ms/run':>9} {'busy CPUs':>9}")
bad = 0
for r in rounds:
    for c in configs:
        f = rows.get((c, r))
        if not f:
            continue
        print(f"{r:>5} {label(c):16} {f[2]:>10} {f[3]:>10} {int(f[4]) / 1000:>10.2f} {int(f[5]) / 1000:>10.2f} "
              f"{f[6]:>7} {f[7]:>5} {f[8]:>7} {'yes' if f[9] == '1' else 'NO':>7} {f[10]:>5} {f[11]:>5} {f[12]:>7} {f[13]:>7} "
              f"{f[14]:>10} {f[15] if c.startswith('pg-') else '-':>9} {f[16]:>9}")
        if c != "webhook" and (f[7] != "0" or f[8] != "0" or f[9] != "1"):
            bad += 1
def med(c, i):
    v = [num(rows[(c, r)][i]) for r in rounds if (c, r) in rows]
    return statistics.median(v) if v else None
def med_ratio(c, base, i):
    v = [ratio(rows[(c, r)][i], rows[(base, r)][i]) for r in rounds if (c, r) in rows and (base, r) in rows]
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None
print()
print(f"median over {len(rounds)} round(s); ratios are medians of the per-round ratios (accepted/s, executed/s):")
print(f"{'config':16} {'accepted/s':>10} {'executed/s':>10} {'ack p99 ms':>10} {'acc/webhook':>11} {'exe/webhook':>11} "
      f"{'acc/sled':>8} {'exe/sled':>8} {'lost':>5} {'doubled':>7} {'srv ms/run':>10} {'pg ms/run':>9}")
for c in configs:
    lost = sum(int(rows[(c, r)][7]) for r in rounds if (c, r) in rows and rows[(c, r)][7] != "-") if c != "webhook" else "-"
    doubled = sum(int(rows[(c, r)][8]) for r in rounds if (c, r) in rows and rows[(c, r)][8] != "-") if c != "webhook" else "-"
    print(f"{label(c):16} {med(c, 2):>10.0f} {med(c, 3):>10.0f} {med(c, 5) / 1000:>10.2f} "
          f"{fmt(med_ratio(c, 'webhook', 2)):>11} {fmt(med_ratio(c, 'webhook', 3)):>11} "
          f"{fmt(med_ratio(c, 'sled', 2)):>8} {fmt(med_ratio(c, 'sled', 3)):>8} {lost:>5} {doubled:>7} "
          f"{med(c, 14):>10.2f} {f'{med(c, 15):.2f}' if c.startswith('pg-') else '-':>9}")
print("srv ms/run: CPU of the server processes and the steps they ran, per executed run; pg ms/run: PostgreSQL's; "
      "busy CPUs: the whole machine's, load start to drain end (the rest is other work on the machine).")
print(f"runs complete and accounted for (0 lost, 0 doubled, drained): {'ok' if bad == 0 else f'FAIL in {bad} round(s)'}")
sys.exit(1 if bad else 0)
PY
