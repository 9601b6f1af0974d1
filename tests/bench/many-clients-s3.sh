#!/usr/bin/env bash
# many-clients-s3.sh - what commands that read every client's generations
# cost against an S3 server on 127.0.0.1, as clients and generations grow:
# time and, with moto, the number of requests each makes.
#
# usage: tests/bench/many-clients-s3.sh [-c CLIENTS] [-g GENERATIONS]
#                                       [-i moto|garage] [-p PORT]
#                                       OBNAM SCRATCH [OBNAM_B]
#
#   OBNAM     the obnam binary (release build; its bundled plugins beside it)
#   SCRATCH   work folder: the server's state (SCRATCH/s3-IMPL, wiped
#             first), a small folder to back up, logs
#   OBNAM_B   a second build to time on the same repository (an A/B):
#             each step runs with OBNAM, then OBNAM_B, then OBNAM again
#   -c        clients (default 100)
#   -g        generations of each (default 5)
#   -i IMPL   the server, started by tests/servers/start-s3.sh and stopped
#             at the end (default moto: it logs each request, which are
#             counted)
#   -p PORT   its port (default 3930; not CI's 3900 or 3910)
#
# Untimed: CLIENTS clients each back up a folder of one small file
# GENERATIONS times (with OBNAM). Timed: `stats`, `fsck`, `prune
# --pretend`, `generations` of one client, and one more backup of that
# client (which finds its latest generation), each with wall seconds and
# requests. Every run has the same HOME: since obnam caches a remote
# store's generation records there, a build that does reads only the
# records it has not seen (the untimed backups saw all but their last).
set -euo pipefail
CLIENTS=100; GENS=5; IMPL=moto; PORT=3930
while getopts "c:g:i:p:h" o; do
  case $o in
    c) CLIENTS=$OPTARG ;; g) GENS=$OPTARG ;; i) IMPL=$OPTARG ;; p) PORT=$OPTARG ;;
    *) sed -n '2,26p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND-1))
[ $# -ge 2 ] || { sed -n '2,20p' "$0"; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
A=$(realpath "$1"); SCRATCH=$(mkdir -p "$2" && realpath "$2"); B=${3:+$(realpath "$3")}
STATE="$SCRATCH/s3-$IMPL"
export S3_IMPL=$IMPL S3_PORT=$PORT S3_STATE_DIR=$STATE S3_FRESH=1
"$here/../servers/start-s3.sh" start >/dev/null
trap '"$here/../servers/start-s3.sh" stop >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
. "$STATE/env.sh"
export HOME="$SCRATCH/home"; mkdir -p "$HOME" "$SCRATCH/small"
echo hi > "$SCRATCH/small/f"
URL="s3://$S3_BUCKET/many-$(date +%s)"
requests() { if [ "$IMPL" = moto ]; then grep -c '" [0-9][0-9][0-9] ' "$STATE/server.log" || true; else echo 0; fi; }
for g in $(seq 1 "$GENS"); do
  for c in $(seq 1 "$CLIENTS"); do
    echo "x$g" > "$SCRATCH/small/g"
    "$A" --no-default-configs --quiet --repository "$URL" --client-name "c$c" backup "$SCRATCH/small"
  done
done
echo "# $CLIENTS clients x $GENS generations on $IMPL; $(nproc) processors" >&2
step() {
  local bin=$1 name=$2; shift 2
  local before after start end
  before=$(requests); start=$(date +%s.%N)
  "$bin" --no-default-configs --quiet --repository "$URL" "$@" > "$SCRATCH/$name.out" 2>&1 \
    || { echo "$name failed:"; tail "$SCRATCH/$name.out"; exit 1; }
  end=$(date +%s.%N); after=$(requests)
  printf '%-22s %-40s %6.2f s %7d requests\n' "$name" "$bin" "$(echo "$end - $start" | bc)" $((after - before))
}
for bin in "$A" ${B:+"$B" "$A"}; do
  step "$bin" stats stats
  step "$bin" fsck fsck
  step "$bin" prune-pretend prune --pretend
  step "$bin" generations-one-client --client-name c1 generations
  step "$bin" backup-one-client --client-name c1 backup "$SCRATCH/small"
done
