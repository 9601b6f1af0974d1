#!/usr/bin/env bash
# prune-memory.sh - the peak memory and time of `obnam prune` on a
# repository of about a million chunks.
#
# usage: tests/bench/prune-memory.sh [-n CHUNKS] [-r REPS] OBNAM SCRATCH
#
#   OBNAM    the obnam binary (release build; its bundled plugins beside it)
#   SCRATCH  work folder (a tmpfs measures CPU, not the disk); needs about
#            3 times CHUNKS * 300 bytes
#   -n       chunks in the repository (default 1000000)
#   -r       repetitions of the timed prune (default 3), each on a fresh
#            copy (cp -a) of the pre-prune repository
#
# History (untimed): ten backups of one file of CHUNKS/4 blocks of 256
# random bytes, with fixed-size chunks of 256 bytes (--chunking fixed
# --chunk-size 256; default 8 MiB packs). The first generation stores
# every block; each later one replaces every third block (block k with
# k % 3 == 0) by new random bytes and keeps the others, so the repository
# holds CHUNKS/4 + 9 * CHUNKS/12 = CHUNKS chunks. Then the 1st, 3rd, 5th,
# 7th and 9th generations are forgotten (untimed): the replaced blocks of
# those generations are unused, which deletes their packs whole and
# leaves a third of every pack of the first generation unused (rewritten
# at the default threshold of 20%).
#
# Timed, under /usr/bin/time -v: `obnam prune`, and for comparison
# `obnam fsck` (no --verify-data: loads the index and walks every tree)
# on the same pre-prune repository. Prints medians, peak RSS and the
# prune's own report.
set -euo pipefail
CHUNKS=1000000; REPS=3
while getopts "n:r:h" o; do
  case $o in n) CHUNKS=$OPTARG ;; r) REPS=$OPTARG ;; *) sed -n '2,30p' "$0"; exit 2 ;; esac
done
shift $((OPTIND-1))
[ $# -eq 2 ] || { sed -n '2,14p' "$0"; exit 2; }
OBNAM=$(realpath "$1"); SCRATCH=$(mkdir -p "$2" && realpath "$2")
export HOME="$SCRATCH/home"; mkdir -p "$HOME"
BLOCKS=$((CHUNKS / 4))
DATA="$SCRATCH/data"; PRE="$SCRATCH/pre-prune"; WORK="$SCRATCH/work"
ob() { "$OBNAM" --no-default-configs --client-name bench "$@"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# timed NAME CMD...: run under /usr/bin/time -v; append "NAME wall cpu rss_kib" to $SCRATCH/times
timed() {
  local name=$1; shift
  /usr/bin/time -v -o "$SCRATCH/time.txt" "$@" >"$SCRATCH/$name.log" 2>&1 || { tail "$SCRATCH/$name.log"; exit 1; }
  awk -v n="$name" -F': ' '
    /Elapsed \(wall clock\)/ { k = split($2, p, ":"); w = 0; for (i = 1; i <= k; i++) w = w * 60 + p[i] }
    /User time/ { u = $2 } /System time/ { s = $2 } /Maximum resident/ { m = $2 }
    END { printf "%s %.2f %.2f %d\n", n, w, u + s, m }' "$SCRATCH/time.txt" | tee -a "$SCRATCH/times" >&2
}

rm -rf "$DATA" "$PRE" "$WORK" "$SCRATCH/times"
mkdir -p "$DATA"
for g in $(seq 1 10); do
  python3 - "$DATA/blocks.bin" "$BLOCKS" "$g" <<'EOF'
import random, sys
path, n, g = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cold, hot = random.Random(1), random.Random(1000 + g)
with open(path, "wb") as f:
    for k in range(n):
        b = cold.randbytes(256)
        f.write(hot.randbytes(256) if g > 1 and k % 3 == 0 else b)
EOF
  ob --quiet --repository "$PRE" --chunking fixed --chunk-size 256 backup "$DATA"
  echo "# generation $g: $(du -sb "$PRE" | cut -f1) bytes" >&2
done
ids=$(ob --repository "$PRE" genids | awk 'NR % 2 == 1')
# shellcheck disable=SC2086
ob --quiet --repository "$PRE" forget $ids >/dev/null
echo "# forgot: $(echo $ids)" >&2
timed fsck "$OBNAM" --no-default-configs --client-name bench --quiet --repository "$PRE" fsck
for rep in $(seq 1 "$REPS"); do
  rm -rf "$WORK"; cp -a "$PRE" "$WORK"; sync
  timed prune "$OBNAM" --no-default-configs --client-name bench --repository "$WORK" prune --output-format json
done
ob --quiet --repository "$WORK" fsck --verify-data
echo "# after the prune: fsck --verify-data clean; the repository holds $(du -sb "$WORK" | cut -f1) bytes (before: $(du -sb "$PRE" | cut -f1))" >&2
python3 - "$SCRATCH/prune.log" >&2 <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
keys = ("packs_deleted", "packs_rewritten", "bytes_freed", "bytes_rewritten", "index_objects_deleted", "generations")
print("# prune report:", ", ".join(f"{k} {d[k]}" for k in keys))
EOF
for n in fsck prune; do
  awk -v n=$n '$1 == n' "$SCRATCH/times" >"$SCRATCH/t.$n"
  printf '%s: wall %s s (median of %d), CPU %s s, peak RSS %d MiB (max %d)\n' "$n" \
    "$(cut -d' ' -f2 "$SCRATCH/t.$n" | median)" "$(wc -l <"$SCRATCH/t.$n")" \
    "$(cut -d' ' -f3 "$SCRATCH/t.$n" | median)" \
    "$(cut -d' ' -f4 "$SCRATCH/t.$n" | median | awk '{print int($1 / 1024)}')" \
    "$(cut -d' ' -f4 "$SCRATCH/t.$n" | sort -n | tail -1 | awk '{print int($1 / 1024)}')"
done
