#!/usr/bin/env bash
# million-files.sh - obnam and restic on a tree of a million small files:
# backup, no-change backup, restore of one file, ls of one folder, the
# list of generations; and how obnam's peak memory follows the largest
# folder rather than the tree.
#
# usage: tests/bench/million-files.sh [-n FILES] [-r REPS] [-t "TOOLS"]
#                                     OBNAM SCRATCH
#
#   OBNAM    the obnam binary (release build; its bundled plugins beside it)
#   SCRATCH  work folder (a tmpfs measures CPU, not the disk); needs about
#            8 GB for a million files: the trees (4 KiB a file on tmpfs)
#            and one repository at a time (each is removed after its
#            steps); delete SCRATCH afterwards, the trees are kept for a
#            rerun
#   -n       files in the big tree (default 1000000; a multiple of 1000)
#   -r       repetitions of every timed step (default 3); medians printed
#   -t       tools (default "obnam restic")
#
# The trees (made untimed by a seeded Python generator; each file holds
# 1 to 4 KiB of pseudo-random bytes, so nothing compresses or dedups):
#   big    FILES/1000 folders d0000.. of 1000 files f0000.. each
#   wide   FILES/10 files, in folders of 1000 (a tenth of big, same
#          largest folder)
#   flat   FILES/10 files, all in one folder (the size of wide, a
#          largest folder 100 times larger)
#
# Timed, each under /usr/bin/time -v, per tool, on the big tree: for each
# of REPS fresh repositories, the initial backup and then a backup with
# nothing changed; then, on the last repository, REPS times each: the
# restore of one file (into an empty folder), the listing of one folder
# of 1000 files (obnam ls DIR; restic ls latest DIR), and the list of
# generations (obnam generations; restic snapshots). Then, REPS times each
# into fresh repositories, the initial backup of wide and of flat: big
# against wide shows whether peak memory grows with the tree (10 times
# the files, same largest folder), wide against flat whether it grows
# with the largest folder.
#
# obnam runs with --no-default-configs and its defaults otherwise; restic
# with its defaults, RESTIC_PASSWORD set and its cache under SCRATCH (the
# cache is kept between runs, as a user's would be). Prints, per tool and
# step, the median wall time, CPU time (user + system) and peak RSS.
# Every line of $SCRATCH/times is "TOOL STEP wall cpu rss_kib".
set -euo pipefail
FILES=1000000; REPS=3; TOOLS="obnam restic"
while getopts "n:r:t:h" o; do
  case $o in n) FILES=$OPTARG ;; r) REPS=$OPTARG ;; t) TOOLS=$OPTARG ;; *) sed -n '2,43p' "$0"; exit 2 ;; esac
done
shift $((OPTIND-1))
[ $# -eq 2 ] || { sed -n '2,18p' "$0"; exit 2; }
[ $((FILES % 1000)) -eq 0 ] && [ "$FILES" -ge 10000 ] || { echo "FILES must be a multiple of 1000, at least 10000" >&2; exit 2; }
OBNAM=$(realpath "$1"); SCRATCH=$(mkdir -p "$2" && realpath "$2")
export HOME="$SCRATCH/home"; mkdir -p "$HOME"
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$SCRATCH/restic-cache"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# timed TOOL STEP CMD...: run under /usr/bin/time -v; append
# "TOOL STEP wall cpu rss_kib" to $SCRATCH/times
timed() {
  local tool=$1 step=$2; shift 2
  /usr/bin/time -v -o "$SCRATCH/time.txt" "$@" >"$SCRATCH/$tool.$step.log" 2>&1 || { tail "$SCRATCH/$tool.$step.log"; exit 1; }
  awk -v n="$tool $step" -F': ' '
    /Elapsed \(wall clock\)/ { k = split($2, p, ":"); w = 0; for (i = 1; i <= k; i++) w = w * 60 + p[i] }
    /User time/ { u = $2 } /System time/ { s = $2 } /Maximum resident/ { m = $2 }
    END { printf "%s %.2f %.2f %d\n", n, w, u + s, m }' "$SCRATCH/time.txt" | tee -a "$SCRATCH/times" >&2
}

# make_tree DIR FOLDERS PER_FOLDER: FOLDERS folders of PER_FOLDER files
make_tree() {
  [ -f "$1.done" ] && return 0
  rm -rf "$1"
  python3 - "$1" "$2" "$3" <<'EOF'
import os, random, sys
root, folders, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(18)
for d in range(folders):
    path = os.path.join(root, f"d{d:04}")
    os.makedirs(path)
    for f in range(per):
        with open(os.path.join(path, f"f{f:06}" if per > 10000 else f"f{f:04}"), "wb") as out:
            out.write(rng.randbytes(rng.randint(1024, 4096)))
EOF
  touch "$1.done"
}

# The commands of each tool: REPO is the repository, the rest as named.
obnam_cmd()  { "$OBNAM" --no-default-configs --client-name bench --quiet --repository "$REPO" "$@"; }
# obnam refuses to make a repository anew where this machine used one: a
# repository removed for the next repetition takes its record with it.
tool_init()   { case $1 in obnam) rm -rf "$HOME/.local/state/obnam" ;; restic) restic -q -r "$REPO" init >/dev/null ;; esac; }
tool_backup() { case $1 in obnam) obnam_cmd backup "$2" ;; restic) restic -q -r "$REPO" backup "$2" ;; esac; }
tool_restore() { # TOOL FILE TARGET
  case $1 in
    obnam) obnam_cmd restore --to "$3" "$2" ;;
    restic) restic -q -r "$REPO" restore latest --target "$3" --include "$2" ;;
  esac
}
tool_ls()    { case $1 in obnam) obnam_cmd ls "$2" ;; restic) restic -q -r "$REPO" ls latest "$2" ;; esac; }
tool_gens()  { case $1 in obnam) obnam_cmd generations ;; restic) restic -q -r "$REPO" snapshots ;; esac; }
export -f obnam_cmd tool_init tool_backup tool_restore tool_ls tool_gens
export OBNAM

BIG="$SCRATCH/big"; WIDE="$SCRATCH/wide"; FLAT="$SCRATCH/flat"
rm -f "$SCRATCH/times"
t0=$SECONDS
make_tree "$BIG" $((FILES / 1000)) 1000
make_tree "$WIDE" $((FILES / 10000)) 1000
make_tree "$FLAT" 1 $((FILES / 10))
echo "# trees made in $((SECONDS - t0)) s: big $(du -sb "$BIG" | cut -f1) bytes" >&2
ONE_DIR="$BIG/d$(printf %04d $((FILES / 2000)))"
ONE_FILE="$ONE_DIR/f0500"

for tool in $TOOLS; do
  case $tool in obnam) v=$("$OBNAM" --version) ;; *) v=$("$tool" version) ;; esac
  echo "# $tool: $v" >&2
  for rep in $(seq 1 "$REPS"); do
    export REPO="$SCRATCH/repo-$tool"
    rm -rf "$REPO"; tool_init "$tool"
    timed "$tool" backup bash -c 'tool_backup "$0" "$1"' "$tool" "$BIG"
    timed "$tool" nochange bash -c 'tool_backup "$0" "$1"' "$tool" "$BIG"
  done
  echo "# $tool: repository of $(du -sb "$REPO" | cut -f1) bytes" >&2
  for rep in $(seq 1 "$REPS"); do
    rm -rf "$SCRATCH/restored"; mkdir "$SCRATCH/restored"
    timed "$tool" restore1 bash -c 'tool_restore "$0" "$1" "$2"' "$tool" "$ONE_FILE" "$SCRATCH/restored"
    cmp "$ONE_FILE" "$SCRATCH/restored$ONE_FILE"
    timed "$tool" ls-dir bash -c 'tool_ls "$0" "$1"' "$tool" "$ONE_DIR"
    timed "$tool" generations bash -c 'tool_gens "$0"' "$tool"
  done
  # The listing named every file of the folder (and the folder itself).
  [ "$(grep -cE '/f[0-9]+$' "$SCRATCH/$tool.ls-dir.log")" -eq 1000 ] || { echo "$tool ls: not 1000 files" >&2; exit 1; }
  rm -rf "$REPO"
  for tree in wide flat; do
    for rep in $(seq 1 "$REPS"); do
      REPO="$SCRATCH/repo-$tool-$tree"
      rm -rf "$REPO"; tool_init "$tool"
      timed "$tool" "backup-$tree" bash -c 'tool_backup "$0" "$1"' "$tool" "$SCRATCH/$tree"
    done
    rm -rf "$REPO"
  done
done

echo "# $(nproc) processors, $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) MiB; medians of $REPS" >&2
printf '%-7s %-14s %9s %9s %12s\n' tool step "wall s" "CPU s" "peak RSS MiB"
for tool in $TOOLS; do
  for step in backup nochange restore1 ls-dir generations backup-wide backup-flat; do
    awk -v t="$tool" -v s="$step" '$1 == t && $2 == s' "$SCRATCH/times" >"$SCRATCH/t.sel"
    [ -s "$SCRATCH/t.sel" ] || continue
    printf '%-7s %-14s %9s %9s %12s\n' "$tool" "$step" \
      "$(cut -d' ' -f3 "$SCRATCH/t.sel" | median)" \
      "$(cut -d' ' -f4 "$SCRATCH/t.sel" | median)" \
      "$(cut -d' ' -f5 "$SCRATCH/t.sel" | median | awk '{printf "%.0f", $1 / 1024}')"
  done
done
