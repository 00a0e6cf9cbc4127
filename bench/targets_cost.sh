#!/usr/bin/env bash
# tcpcopy CPU for one target vs two targets (one tcpcopy, one -x per target), in a local lab.
#   bash bench/targets_cost.sh [ROUNDS]       (root; builds lab "mt" with --targets 2, removes it)
# Prints tcpcopy's CPU seconds (utime+stime) per 5,000 keep-alive requests at 1,000 req/s,
# rounds interleaved one/two, and writes bench/results/targets_cost.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
L=.venv/bin/labctl
export LABCTL_STATE_DIR=$(mktemp -d /tmp/labctl-targets-XXXX)
trap '$L lab down --name mt >/dev/null 2>&1 || true; rm -rf "$LABCTL_STATE_DIR"' EXIT
$L lab up --name mt --targets 2 >/dev/null
INV2=$LABCTL_STATE_DIR/mt/inventory.yaml
INV1=$LABCTL_STATE_DIR/one-target.yaml
sed '/name: target2/d' "$INV2" > "$INV1"
STATE=$(awk '/^state_dir:/{print $2}' "$INV2")
run() {
  $L up "$1" >/dev/null
  local pid; pid=$(cat "$STATE/mt/online/tcpcopy.pid")
  local a; a=$(awk '{print $14+$15}' /proc/"$pid"/stat)
  ip netns exec lc-mt-client .venv/bin/python -m labctl.lab.traffic --url http://10.77.1.10 \
    --requests 5000 --mode keepalive --connections 10 --rate 1000 --json >/dev/null
  sleep 3   # the copies' tail (a bench, not a test)
  local b; b=$(awk '{print $14+$15}' /proc/"$pid"/stat)
  $L down "$1" >/dev/null
  python3 -c "print(round(($b - $a) / $(getconf CLK_TCK), 3))"
}
one=(); two=()
for _ in $(seq "$ROUNDS"); do one+=("$(run "$INV1")"); two+=("$(run "$INV2")"); done
echo "tcpcopy CPU s per 5,000 requests: one target ${one[*]}; two targets ${two[*]}"
mkdir -p bench/results
python3 -c "import json,sys; json.dump({'one_target_s': sys.argv[1].split(), 'two_targets_s': sys.argv[2].split()}, open('bench/results/targets_cost.json','w'))" "${one[*]}" "${two[*]}"
