#!/usr/bin/env bash
# diff-peers.sh - compare two generations: obnam diff against restic diff,
# on the benchmark corpus and on a tree of many small files, in one run.
#
# usage: tests/bench/diff-peers.sh [-r REPS] [-s SCALE] [-n FILES] OBNAM SCRATCH
#
#   OBNAM    the obnam binary (release build; its bundled plugins beside it)
#   SCRATCH  work folder (a tmpfs measures CPU, not the disk)
#   -r REPS  repetitions of each timed diff (default 3)
#   -s SCALE make_corpus.py scale (default 1.0: 1.2 GB)
#   -n FILES files of the many-files tree (default 1000000), in folders of
#            1000, 64 bytes each; 0 skips it
#
# Corpus (untimed): make_corpus.py generate, one backup with each tool,
# make_corpus.py mutate, a second backup. Many files (untimed): FILES
# files, a backup, then 10 files in 10 different folders rewritten, a
# second backup. Timed, REPS times per tool and tree: the diff of the two
# generations (obnam diff; restic diff ID1 ID2), output to /dev/null,
# under /usr/bin/time -v (wall, CPU, peak RSS). Untimed, once: both tools
# list the same changed paths in the many-files tree (the 10 files).
#
# Prints one markdown table (medians, min-max) and writes
# SCRATCH/diff-results.tsv.
set -euo pipefail
REPS=3; SCALE=1.0; FILES=1000000
while getopts "r:s:n:h" o; do
  case $o in
    r) REPS=$OPTARG ;; s) SCALE=$OPTARG ;; n) FILES=$OPTARG ;;
    *) sed -n '2,22p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND-1))
[ $# -eq 2 ] || { sed -n '2,22p' "$0"; exit 2; }
OBNAM=$(realpath "$1"); SCRATCH=$(mkdir -p "$2" && realpath "$2")
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=${SHARED_BENCH:-$(realpath "$HERE/../../../shared/bench")}
MAKE_CORPUS="$BENCH/make_corpus.py"
[ -f "$MAKE_CORPUS" ] || { echo "no $MAKE_CORPUS (set SHARED_BENCH)" >&2; exit 2; }
export RESTIC_PASSWORD='bench-password-not-secret'
export HOME="$SCRATCH/home" RESTIC_CACHE_DIR="$SCRATCH/home/restic-cache"
mkdir -p "$HOME"
RES="$SCRATCH/diff-results.tsv"
obnam_() { "$OBNAM" --no-default-configs --quiet --client-name bench "$@"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
minmax() { sort -n | awk 'NR==1{lo=$1} {hi=$1} END {print lo "-" hi}'; }

backup_both() { # TREE NAME
  obnam_ --repository "$SCRATCH/repo-$2/obnam" backup "$1" >/dev/null
  restic -q -r "$SCRATCH/repo-$2/restic" backup --host bench "$1" >/dev/null
}

setup() { # NAME: the two repositories
  # With the repository, this machine's record of it (obnam refuses to
  # make a repository anew where one was).
  rm -rf "$SCRATCH/repo-$1" "$HOME/.local/state/obnam"; mkdir -p "$SCRATCH/repo-$1"
  restic -q -r "$SCRATCH/repo-$1/restic" init >/dev/null
}

timed() { # TOOL TREE-NAME REP
  local repo="$SCRATCH/repo-$2/$1" cmd rc=0
  case $1 in
    obnam) cmd=("$OBNAM" --no-default-configs --quiet --client-name bench --repository "$repo" diff) ;;
    restic) mapfile -t ids < <(restic -q -r "$repo" snapshots --json | python3 -c \
              'import json,sys; [print(s["short_id"]) for s in sorted(json.load(sys.stdin), key=lambda s: s["time"])]')
            cmd=(restic -r "$repo" diff "${ids[0]}" "${ids[1]}") ;;
  esac
  sync
  /usr/bin/time -v -o "$SCRATCH/time.txt" "${cmd[@]}" >"$SCRATCH/diff-$1-$2.out" 2>"$SCRATCH/diff-$1-$2.err" || rc=$?
  [ "$rc" = 0 ] || { cat "$SCRATCH/diff-$1-$2.err" >&2; exit 1; }
  awk -v t="$1" -v tree="$2" -v rep="$3" -F': ' '
    /Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i] }
    /User time/ { u = $2 } /System time/ { s = $2 } /Maximum resident/ { m = $2 }
    END { printf "%s\t%s\t%s\t%.2f\t%.2f\t%s\n", tree, t, rep, w, u + s, m }' "$SCRATCH/time.txt" >>"$RES"
  tail -1 "$RES" | awk -F'\t' '{ printf "  %s %s rep %s: %s s wall, %s s CPU, %d MiB peak\n", $1, $2, $3, $4, $5, $6 / 1024 }' >&2
}

printf 'tree\ttool\trep\twall_s\tcpu_s\tmaxrss_kib\n' >"$RES"
TREES=""

echo "# corpus: make_corpus.py generate --scale $SCALE, backups, mutate, backups" >&2
rm -rf "$SCRATCH/corpus"; setup corpus
python3 "$MAKE_CORPUS" generate "$SCRATCH/corpus" --scale "$SCALE" >/dev/null
backup_both "$SCRATCH/corpus" corpus
python3 "$MAKE_CORPUS" mutate "$SCRATCH/corpus" >/dev/null
backup_both "$SCRATCH/corpus" corpus
TREES="corpus"

if [ "$FILES" -gt 0 ]; then
  echo "# many files: $FILES files of 64 bytes in folders of 1000, backups, 10 changed, backups" >&2
  rm -rf "$SCRATCH/many"; setup many
  python3 - "$SCRATCH/many" "$FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d)
    with open(os.path.join(d, "f%04d" % (i % 1000)), "w") as f:
        f.write("%063d\n" % i)
EOF
  backup_both "$SCRATCH/many" many
  python3 - "$SCRATCH/many" "$FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
dirs = max(1, n // 1000)
for k in range(10):
    d = os.path.join(root, "d%04d" % (k * dirs // 10))
    with open(os.path.join(d, "f0007"), "w") as f:
        f.write("changed %d\n" % k)
EOF
  backup_both "$SCRATCH/many" many
  TREES="corpus many"
fi

for tree in $TREES; do
  for t in obnam restic; do
    for rep in $(seq 1 "$REPS"); do timed "$t" "$tree" "$rep"; done
  done
done

if [ "$FILES" -gt 0 ]; then
  # Both saw the same 10 changed files (obnam: "M  PATH (...)"; restic: "M    PATH").
  o=$(grep '^M ' "$SCRATCH/diff-obnam-many.out" | awk '{print $2}' | sort)
  r=$(grep '^M ' "$SCRATCH/diff-restic-many.out" | awk '{print $2}' | grep -v '/$' | sort)
  want=$(( FILES / 1000 < 10 ? (FILES / 1000 > 0 ? FILES / 1000 : 1) : 10 ))
  [ "$(echo "$o" | wc -l)" = "$want" ] && [ "$o" = "$r" ] \
    || { echo "the tools disagree on the changed files:"; echo "$o"; echo "--"; echo "$r"; exit 1; } >&2
  echo "# many files: both list the same $want modified files" >&2
fi

echo
echo "| tree | tool | wall s (median, min-max) | CPU s | peak RSS MiB |"
echo "|---|---|---|---|---|"
for tree in $TREES; do
  for t in obnam restic; do
    col() { awk -F'\t' -v tr="$tree" -v t="$t" -v c="$1" '$1 == tr && $2 == t { print $c }' "$RES"; }
    printf '| %s | %s | %s (%s) | %s | %s |\n' "$tree" "$t" "$(col 4 | median)" "$(col 4 | minmax)" \
      "$(col 5 | median)" "$(( $(col 6 | median | cut -d. -f1) / 1024 ))"
  done
done
