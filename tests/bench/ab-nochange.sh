#!/usr/bin/env bash
# ab-nochange.sh - an interleaved A/B of two obnam builds on the
# no-change backup: the builds run one after the other, N times each,
# and each run's new generation is deleted after it, so that every run
# sees the same repository (a generation more per run would tilt the
# comparison against the later runs).
#
# usage: tests/bench/ab-nochange.sh N DIR_A DIR_B REPO CORPUS
#
#   N        runs per build
#   DIR_A/B  folders holding each build's `obnam` and its plugins (copy
#            target/release/obnam and target/release/libobnam_plugin_*.so)
#   REPO     a local repository holding one backup of CORPUS by client b
#            (`obnam --no-default-configs -r REPO --client-name b backup CORPUS`)
#   CORPUS   the tree backed up
#
# Prints per build the median and mean wall time, the mean processor
# time and the mean peak RSS (wall time from the shell's clock, processor time and RSS from
# /usr/bin/time).
set -euo pipefail
[ $# -eq 5 ] || { sed -n '2,18p' "$0"; exit 2; }
N=$1; A=$2; B=$3; REPO=$4; CORPUS=$5
gen_dir=$(ls -d "$REPO"/generations/*/ | head -1)
times=$(mktemp -d)
trap 'rm -rf "$times"' EXIT
run() {
  local bin=$1 before
  before=$(ls "$gen_dir")
  start=$EPOCHREALTIME
  /usr/bin/time -f "%e %U %S %M" -o "$times/last" "$bin/obnam" --no-default-configs --quiet \
    -r "$REPO" --client-name b backup "$CORPUS"
  end=$EPOCHREALTIME
  for g in $(ls "$gen_dir"); do grep -qx "$g" <<<"$before" || rm "$gen_dir/$g"; done
  # The wall time from the shell's clock (microseconds; /usr/bin/time
  # gives hundredths), the rest as /usr/bin/time measured it.
  awk -v s="$start" -v e="$end" '{printf "%.4f %s %s %s\n", e - s, $2, $3, $4}' "$times/last"
}
for i in $(seq 1 "$N"); do run "$A" >> "$times/A"; run "$B" >> "$times/B"; done
for x in A B; do
  sort -n "$times/$x" | awk -v x="$x" '{w[NR]=$1; c+=$2+$3; s+=$1; m+=$4}
    END {printf "%s: median wall %.4f s, mean wall %.4f s, mean CPU %.3f s, mean peak RSS %d KB\n",
         x, w[int((NR+1)/2)], s/NR, c/NR, m/NR}'
done
