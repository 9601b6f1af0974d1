#!/usr/bin/env bash
# lock-traffic.sh - what the lock protocol costs as clients are added:
# many clients taking and releasing their locks at once against an S3
# server on 127.0.0.1, and the cost of one acquisition against the number
# of locks present.
#
# usage: tests/bench/lock-traffic.sh [-c CLIENTS] [-s SECONDS] [-n REPS]
#                                    [-i moto|garage] [-p PORT]
#                                    LOCK_TRAFFIC SCRATCH
#
#   LOCK_TRAFFIC  the example binary: cargo build --release -p
#                 obnam-repository --example lock_traffic, then
#                 target/release/examples/lock_traffic
#   SCRATCH       work folder: the server's state (SCRATCH/s3-IMPL, wiped
#                 first) and logs
#   -c CLIENTS    clients at once in the loop (default 200)
#   -s SECONDS    how long the loop runs (default 60)
#   -n REPS       acquisitions timed per point of the growth curve
#                 (default 20)
#   -i IMPL       the server, started by tests/servers/start-s3.sh and
#                 stopped at the end (default moto)
#   -p PORT       its port (default 3920; not CI's 3900 or 3910; garage also PORT+1, PORT+3)
#
# Timed (in the example, not here): first, for HELD = 0, 10, 50, 100 and
# CLIENTS, HELD clients take their locks and keep them while one more
# client takes and releases its lock REPS times in a row (the cost of one
# acquisition with HELD other locks present); then CLIENTS clients at
# once, each taking its lock as a backup does (`lock_client`), releasing
# it and taking it again, for SECONDS: acquisitions per second and
# latency (median, p99, max). Every client is a thread with its own
# opened repository and client name (no two conflict). With moto, the
# store requests are counted from its request log and given per
# acquisition; garage keeps no such log, so only times are given.
set -euo pipefail
CLIENTS=200; SECONDS_=60; REPS=20; IMPL=moto; PORT=3920
while getopts "c:s:n:i:p:h" o; do
  case $o in
    c) CLIENTS=$OPTARG ;; s) SECONDS_=$OPTARG ;; n) REPS=$OPTARG ;;
    i) IMPL=$OPTARG ;; p) PORT=$OPTARG ;; *) sed -n '2,33p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND-1))
[ $# -eq 2 ] || { sed -n '2,22p' "$0"; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
LT=$(realpath "$1"); SCRATCH=$(mkdir -p "$2" && realpath "$2")
STATE="$SCRATCH/s3-$IMPL"
export S3_IMPL=$IMPL S3_PORT=$PORT S3_STATE_DIR=$STATE S3_FRESH=1
"$here/../servers/start-s3.sh" start >/dev/null
trap '"$here/../servers/start-s3.sh" stop >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
. "$STATE/env.sh"
[ "$IMPL" = moto ] && export LOCK_TRAFFIC_LOG="$STATE/server.log"
# A fresh prefix per run: nothing left from an earlier one.
URL="s3://$S3_BUCKET/locks-$(date +%s)"
"$LT" create "$URL"
echo "# $IMPL on 127.0.0.1:$PORT; $(nproc) processors, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for held in 0 10 50 100 "$CLIENTS"; do
  "$LT" held "$URL" "$held" "$REPS"
done
"$LT" loop "$URL" "$CLIENTS" "$SECONDS_"
echo "# load at the end $(cut -d' ' -f1-3 /proc/loadavg)" >&2
