#!/usr/bin/env bash
# A local "cluster" for trying `ray job submit` and Serve on one machine.
# Ray 2.60 enables token auth: submit with RAY_AUTH_MODE=token in the same shell (see README).
# 4 logical CPUs: the local preset places a generator actor, 2 scorer actors and an env runner.
set -euo pipefail
ray stop --force >/dev/null 2>&1 || true
ray start --head --num-cpus "${NUM_CPUS:-4}" --dashboard-host 127.0.0.1 --disable-usage-stats
echo "dashboard / job API: http://127.0.0.1:8265"
