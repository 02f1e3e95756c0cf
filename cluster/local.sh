#!/usr/bin/env bash
# A local "cluster" for trying `ray job submit` and Serve on one machine.
# Ray 2.60 enables token auth: submit with RAY_AUTH_MODE=token in the same shell (see README).
set -euo pipefail
ray stop --force >/dev/null 2>&1 || true
ray start --head --num-cpus "${NUM_CPUS:-2}" --dashboard-host 127.0.0.1 --disable-usage-stats
echo "dashboard / job API: http://127.0.0.1:8265"
