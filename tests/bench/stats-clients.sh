#!/usr/bin/env bash
# stats-clients.sh - the time and peak memory of `obnam stats` on a
# repository of many clients and about a million chunks.
#
# usage: tests/bench/stats-clients.sh [-n CHUNKS] [-c CLIENTS] [-r REPS]
#                                     OBNAM SCRATCH
#
#   OBNAM    the obnam binary (release build; its bundled plugins beside it)
#   SCRATCH  work folder (a tmpfs measures CPU, not the disk); needs about
#            CHUNKS * 600 bytes
#   -n       chunks of the one large client (default 1000000)
#   -c       small clients besides it (default 100)
#   -r       repetitions of the timed `stats` (default 3)
#
# Untimed: client "big" backs up one file of CHUNKS * 256 random bytes
# with fixed-size chunks of 256 bytes (--chunking fixed --chunk-size 256),
# then CLIENTS clients each back up a folder of one 3-byte file. Timed,
# under /usr/bin/time: `obnam --output-format json stats`; prints each
# run's wall and processor seconds and peak RSS, then the medians.
set -euo pipefail
CHUNKS=1000000; CLIENTS=100; REPS=3
while getopts "n:c:r:h" o; do
  case $o in n) CHUNKS=$OPTARG ;; c) CLIENTS=$OPTARG ;; r) REPS=$OPTARG ;; *) sed -n '2,20p' "$0"; exit 2 ;; esac
done
shift $((OPTIND-1))
[ $# -eq 2 ] || { sed -n '2,14p' "$0"; exit 2; }
OBNAM=$(realpath "$1"); SCRATCH=$(mkdir -p "$2" && realpath "$2")
export HOME="$SCRATCH/home"; mkdir -p "$HOME"
REPO="$SCRATCH/repo"
rm -rf "$REPO" "$SCRATCH/data" "$SCRATCH/small" "$SCRATCH/times"
mkdir -p "$SCRATCH/data" "$SCRATCH/small"
head -c $((CHUNKS * 256)) /dev/urandom > "$SCRATCH/data/blocks.bin"
echo hi > "$SCRATCH/small/f"
ob() { "$OBNAM" --no-default-configs --quiet --repository "$REPO" "$@"; }
ob --client-name big backup --chunking fixed --chunk-size 256 "$SCRATCH/data"
for i in $(seq 1 "$CLIENTS"); do ob --client-name "c$i" backup "$SCRATCH/small"; done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for r in $(seq 1 "$REPS"); do
  /usr/bin/time -f "%e %U %S %M" -o "$SCRATCH/time.txt" "$OBNAM" --no-default-configs --quiet \
    --output-format json --repository "$REPO" stats > "$SCRATCH/stats.json"
  awk '{printf "stats: %.2f s wall, %.2f s processor, %d KiB peak\n", $1, $2 + $3, $4}' "$SCRATCH/time.txt" >&2
  awk '{print $1, $2 + $3, $4}' "$SCRATCH/time.txt" >> "$SCRATCH/times"
done
echo "$((CLIENTS + 1)) clients, $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['blobs'])" "$SCRATCH/stats.json") blobs:" \
  "median $(cut -d' ' -f1 "$SCRATCH/times" | median) s wall," \
  "$(cut -d' ' -f2 "$SCRATCH/times" | median) s processor," \
  "$(cut -d' ' -f3 "$SCRATCH/times" | median) KiB peak"
