# shellcheck shell=bash
# Shared by the benchmark scripts (load.sh, amplification.sh, queued.sh): sourced, not run.
#
# bench_setup NAME   builds the release binary unless SKIP_BUILD is set, sets UNTOIL (UNTOIL_BIN
#                    overrides target/release/untoil), makes a fresh temp dir TMP, and arranges
#                    for every pid added to PIDS to be stopped (and TMP removed unless KEEP) on
#                    exit. A script may define `before_cleanup` to run first.
# die MESSAGE        prints "NAME.sh: MESSAGE" and exits 1.
# free_port, wait_http URL PID SECONDS, kib PID FIELD (a /proc/PID/status field in KiB), now.

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
    local pid
    if declare -F before_cleanup >/dev/null; then
        before_cleanup
    fi
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
