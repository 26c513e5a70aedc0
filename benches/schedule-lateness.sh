#!/usr/bin/env bash
# Scheduler timing: runs the daemon with a `* * * * * *` schedule for DURATION seconds (default
# 60) and prints how late each fire was queued (queued-at minus the fire time), p50/p99/max.
# Target: p99 under 50 ms. Loopback only; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-60}
cargo build --release -q
BIN=$PWD/target/release/untoil
TMP=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$TMP"' EXIT
mkdir -p "$TMP/runbooks" "$TMP/plugins"
cat > "$TMP/runbooks/tick.yaml" <<'YAML'
name: tick
owner: bench
toil: {manual_minutes: 1}
triggers:
  - schedule: "* * * * * *"
steps:
  - name: s
    run: "true"
YAML
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
UNTOIL_LOG=warn "$BIN" --runbooks "$TMP/runbooks" --plugins "$TMP/plugins" --data "$TMP/data" \
    serve --listen "127.0.0.1:$PORT" 2>"$TMP/log.txt" &
PID=$!
sleep "$DURATION"
curl -s "http://127.0.0.1:$PORT/api/v1/runs?limit=100000" > "$TMP/runs.json"
python3 - "$TMP/runs.json" <<'PY'
import datetime, json, sys
runs = json.load(open(sys.argv[1]))
ts = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
late = sorted((ts(r["created_at"]) - ts(r["cause"]["at"])).total_seconds() * 1000
              for r in runs if r["cause"]["kind"] == "schedule")
n = len(late)
if not n:
    sys.exit("no fires recorded")
print(f"schedule fires: {n}; lateness ms: p50 {late[n // 2]:.2f}, p99 {late[min(n - 1, int(n * 0.99))]:.2f}, max {late[-1]:.2f} (target p99 < 50 ms)")
PY
