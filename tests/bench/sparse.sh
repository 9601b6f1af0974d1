#!/usr/bin/env bash
# sparse.sh - what a sparse file costs to back up and restore, against
# the same data in a dense file.
#
# usage: tests/bench/sparse.sh [-s SIZE] [-d MB] [-r REPS] OBNAM SCRATCH
#
#   OBNAM    the obnam binary (release build; its bundled plugins beside it)
#   SCRATCH  work folder (a tmpfs measures CPU, not the disk)
#   -s       the sparse file's size, as truncate(1) takes it (default 100G)
#   -d       megabytes of random data in it, in four pieces spread over
#            the file (default 8)
#   -r       repetitions (default 3); medians are printed
#
# Timed, each into a fresh repository: a backup of a folder holding only
# the sparse file, and of a folder holding only a dense file of the same
# data; then a restore of each. Prints the medians (wall and CPU
# seconds, peak RSS) and checks that the restored sparse file equals the
# original and is still sparse.
set -euo pipefail
SIZE=100G; MB=8; REPS=3
while getopts "s:d:r:h" o; do
  case $o in s) SIZE=$OPTARG ;; d) MB=$OPTARG ;; r) REPS=$OPTARG ;; *) sed -n '2,19p' "$0"; exit 2 ;; esac
done
shift $((OPTIND-1))
[ $# -eq 2 ] || { sed -n '2,12p' "$0"; exit 2; }
OBNAM=$(realpath "$1"); SCRATCH=$(mkdir -p "$2" && realpath "$2")
export HOME="$SCRATCH/home"; mkdir -p "$HOME"
OB=("$OBNAM" --no-default-configs --client-name bench)

mkdir -p "$SCRATCH/sparse" "$SCRATCH/dense"
S="$SCRATCH/sparse/file.img"; D="$SCRATCH/dense/file.bin"
rm -f "$S" "$D"
truncate -s "$SIZE" "$S"
BYTES=$(stat -c %s "$S")
PIECE=$((MB * 1024 * 1024 / 4))
for i in 0 1 2 3; do
  head -c "$PIECE" /dev/urandom > "$SCRATCH/piece"
  # The last piece ends at the file's end.
  off=$(( i < 3 ? BYTES / 4 * i + 12345 * i : BYTES - PIECE ))
  dd if="$SCRATCH/piece" of="$S" bs=1M seek="$off" oflag=seek_bytes conv=notrunc status=none
  cat "$SCRATCH/piece" >> "$D"
done
rm -f "$SCRATCH/piece"
echo "sparse file: $(stat -c %s "$S") bytes, $(( $(stat -c %b "$S") * 512 )) allocated; dense: $(stat -c %s "$D") bytes"

# timed LABEL CMD...: one run under /usr/bin/time; appends "LABEL wall cpu rss".
timed() {
  local label=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$SCRATCH/t" "$@" > /dev/null 2> "$SCRATCH/err" \
    || { cat "$SCRATCH/err"; exit 1; }
  read -r wall user sys rss < "$SCRATCH/t"
  echo "$label $wall $(echo "$user + $sys" | bc) $rss" >> "$SCRATCH/times"
}

rm -f "$SCRATCH/times"
for r in $(seq "$REPS"); do
  for kind in sparse dense; do
    rm -rf "$SCRATCH/repo-$kind" "$SCRATCH/out-$kind"
    timed "backup-$kind" "${OB[@]}" --repository "$SCRATCH/repo-$kind" backup "$SCRATCH/$kind"
    timed "restore-$kind" "${OB[@]}" --repository "$SCRATCH/repo-$kind" restore --to "$SCRATCH/out-$kind"
  done
done

R="$SCRATCH/out-sparse$S"
cmp "$S" "$R" || { echo "the restored sparse file differs"; exit 1; }
echo "restored sparse file: $(( $(stat -c %b "$R") * 512 )) bytes allocated"

python3 - "$SCRATCH/times" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, wall, cpu, rss = line.split()
    rows.setdefault(label, []).append((float(wall), float(cpu), int(rss)))
print(f"{'step':<16}{'wall s':>8}{'cpu s':>8}{'peak RSS MB':>13}   (medians of {len(next(iter(rows.values())))})")
for label, runs in rows.items():
    print(f"{label:<16}{statistics.median(r[0] for r in runs):>8.2f}"
          f"{statistics.median(r[1] for r in runs):>8.2f}"
          f"{statistics.median(r[2] for r in runs) / 1024:>13.1f}")
EOF
