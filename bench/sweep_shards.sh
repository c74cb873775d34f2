#!/bin/bash
# Run a sweep as N shard processes side by side (one GPU holds many small-model cells at once), for a machine
# without Ray; with Ray, `fingerprint sweep CONFIG --ray --workers N [--gpus-per-cell F]` does this.
#   bench/sweep_shards.sh CONFIG N [extra sweep options...]
# The aligned stand-in is built (or found in the cache) first, so the workers never train it twice;
# a dry run creates the sweep's table before they start. Worker logs: sweep-shard-I.log in the current folder.
set -euo pipefail
config=$1; count=$2; shift 2
python - "$config" <<'PY'
import subprocess, sys
from fingerprint.research.sweep import load_config
config = load_config(sys.argv[1])
for model in config.models if config.align else []:
    subprocess.run([sys.executable, "-m", "cli", "align", "--model", model, "--data-dir", config.data_dir, "-q"],
                   check=True, stdout=subprocess.DEVNULL)
PY
python -m cli sweep "$config" --dry-run "$@"
pids=()
for i in $(seq 0 $((count - 1))); do
  python -m cli sweep "$config" -q --json --shard "$i/$count" "$@" > "sweep-shard-$i.log" 2>&1 &
  pids+=($!)
done
trap 'kill -INT "${pids[@]}" 2>/dev/null' INT TERM
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
python -m cli sweep "$config" --dry-run "$@"
exit $status
