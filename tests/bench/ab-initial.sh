#!/usr/bin/env bash
# ab-initial.sh - an interleaved A/B of two obnam builds on the initial
# backup: the builds run one after the other, N times each, each into a
# new repository (deleted after the run), so that the machine's drift
# falls on both alike.
#
# usage: tests/bench/ab-initial.sh N DIR_A DIR_B SCRATCH CORPUS [OPTION...]
#
#   N        runs per build
#   DIR_A/B  folders holding each build's `obnam` and its plugins (copy
#            target/release/obnam and target/release/libobnam_plugin_*.so)
#   SCRATCH  a folder for the repositories (on the same file system as a
#            real run would use: tmpfs for the shared harness's figures)
#   CORPUS   the tree backed up
#   OPTION   passed to `obnam backup` (e.g. --compress-with none)
#
# Prints per build the median and mean wall time, the mean processor
# time and the mean peak RSS (wall time from the shell's clock, processor time and RSS from
# /usr/bin/time).
set -euo pipefail
[ $# -ge 5 ] || { sed -n '2,18p' "$0"; exit 2; }
N=$1; A=$2; B=$3; SCRATCH=$4; CORPUS=$5
shift 5
times=$(mktemp -d)
# obnam refuses to make a repository anew where this machine used one:
# the records of this script's runs are its own, removed with the
# repository.
export XDG_STATE_HOME="$times/state"
trap 'rm -rf "$times" "$SCRATCH/ab-initial-repo"' EXIT
run() {
  local bin=$1
  rm -rf "$SCRATCH/ab-initial-repo" "$XDG_STATE_HOME"
  start=$EPOCHREALTIME
  /usr/bin/time -f "%e %U %S %M" -o "$times/last" "$bin/obnam" --no-default-configs --quiet \
    -r "$SCRATCH/ab-initial-repo" --client-name b backup "$@" "$CORPUS"
  end=$EPOCHREALTIME
  # The wall time from the shell's clock (microseconds; /usr/bin/time
  # gives hundredths), the rest as /usr/bin/time measured it.
  awk -v s="$start" -v e="$end" '{printf "%.4f %s %s %s\n", e - s, $2, $3, $4}' "$times/last"
}
for i in $(seq 1 "$N"); do run "$A" "$@" >> "$times/A"; run "$B" "$@" >> "$times/B"; done
for x in A B; do
  sort -n "$times/$x" | awk -v x="$x" '{w[NR]=$1; c+=$2+$3; s+=$1; m+=$4}
    END {printf "%s: median wall %.4f s, mean wall %.4f s, mean CPU %.3f s, mean peak RSS %d KB\n",
         x, w[int((NR+1)/2)], s/NR, c/NR, m/NR}'
done
