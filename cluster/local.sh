#!/usr/bin/env bash
# A local "cluster" for trying `ray job submit` and Serve on one machine (README, "Try the cluster
# commands locally").
#
#   cluster/local.sh start    # a Ray head of this checkout's .venv, in its own temp dir, with a token
#   source "$(cluster/local.sh env)"   # RAY_AUTH_MODE, RAY_AUTH_TOKEN, ARGEN_RAY_DASHBOARD
#   cluster/local.sh stop     # stops this head (by its pid), never another Ray on the machine
#
# The head runs with the venv's bin/ first on PATH, so a job's entrypoint finds `argen-ray` (and
# the venv's `python`). Ray 2.60 turns token auth on: `start` makes a token for this head and
# writes it to <temp>/env.sh (mode 600); clients need it for `ray job submit`.
# Settings (environment): ARGEN_RAY_TEMP (default /tmp/argen-ray-local; keep it short, raylet
# socket paths are length-limited), RAY_PORT (6379), DASHBOARD_PORT (8265), DASHBOARD_AGENT_PORT
# (a free port: Ray's fixed default 52365 is taken by any other Ray on the machine, e.g. a local
# `argen-ray run`, and then the job agent never comes up), NUM_CPUS (4: the local preset places a
# generator actor, 2 scorer actors and an env runner).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RAY=${RAY:-$ROOT/.venv/bin/ray}
if [ ! -x "$RAY" ]; then
  RAY=$(command -v ray) || { echo "local.sh: no ray at $ROOT/.venv/bin/ray or on PATH: run make install" >&2; exit 1; }
fi
BIN=$(dirname "$RAY")
TEMP=${ARGEN_RAY_TEMP:-/tmp/argen-ray-local}
PORT=${RAY_PORT:-6379}
DASH=${DASHBOARD_PORT:-8265}
PIDFILE=$TEMP/head.pid

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-start}" in
  start)
    if running; then
      echo "local.sh: a head is already running from $TEMP (pid $(cat "$PIDFILE")); cluster/local.sh stop first" >&2
      exit 1
    fi
    mkdir -p "$TEMP"
    chmod 700 "$TEMP"
    TOKEN=$("$BIN/python" -c 'import secrets; print(secrets.token_hex(16))')
    AGENT=${DASHBOARD_AGENT_PORT:-$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    umask 077
    printf 'export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=%s\nexport ARGEN_RAY_DASHBOARD=http://127.0.0.1:%s\n' \
      "$TOKEN" "$DASH" > "$TEMP/env.sh"
    # `--block` keeps the head in one process group we own: stopping it stops exactly its processes.
    PATH="$BIN:$PATH" RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$TOKEN nohup "$RAY" start --head --block \
      --port "$PORT" --dashboard-host 127.0.0.1 --dashboard-port "$DASH" \
      --dashboard-agent-listen-port "$AGENT" --num-cpus "${NUM_CPUS:-4}" \
      --temp-dir "$TEMP/ray" --disable-usage-stats > "$TEMP/head.log" 2>&1 &
    echo $! > "$PIDFILE"
    # Ready when a job can be submitted: the Jobs API answers before the node's job agent has
    # registered ("No available agent"), so the probe is a no-op job.
    for i in $(seq 180); do
      if RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$TOKEN "$RAY" job submit --address "http://127.0.0.1:$DASH" --no-wait \
           --submission-id "local-sh-ready-$$-$i" -- true >/dev/null 2>&1; then
        echo "local.sh: head pid $(cat "$PIDFILE"), temp dir $TEMP/ray, job API http://127.0.0.1:$DASH"
        echo "local.sh: now run: source $TEMP/env.sh"
        exit 0
      fi
      if ! running; then
        echo "local.sh: the head exited; its log ($TEMP/head.log):" >&2
        tail -n 20 "$TEMP/head.log" >&2
        exit 1
      fi
      sleep 1
    done
    echo "local.sh: the job API did not answer within 180 s; see $TEMP/head.log (stop: cluster/local.sh stop)" >&2
    exit 1
    ;;
  env)
    [ -f "$TEMP/env.sh" ] || { echo "local.sh: no $TEMP/env.sh: cluster/local.sh start first" >&2; exit 1; }
    echo "$TEMP/env.sh"
    ;;
  stop)
    if ! running; then
      echo "local.sh: no head running from $TEMP"
      exit 0
    fi
    PID=$(cat "$PIDFILE")
    kill -TERM "$PID"  # `ray start --block` stops the processes it started, and only those
    for _ in $(seq 60); do
      kill -0 "$PID" 2>/dev/null || { rm -f "$PIDFILE"; echo "local.sh: stopped head pid $PID"; exit 0; }
      sleep 1
    done
    echo "local.sh: head pid $PID still running after 60 s; see $TEMP/head.log" >&2
    exit 1
    ;;
  *)
    echo "usage: cluster/local.sh start|env|stop" >&2
    exit 2
    ;;
esac
