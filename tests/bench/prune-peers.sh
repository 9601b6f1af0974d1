#!/usr/bin/env bash
# prune-peers.sh - forget half of a history and prune it: obnam, restic and
# Borg on the same ten generations of the same corpus, in one run.
#
# usage: tests/bench/prune-peers.sh [-r REPS] [-g GENS] [-s SCALE] [-c CHURN_MB]
#                                   [-t "obnam restic borg"] OBNAM SCRATCH
#
#   OBNAM    the obnam binary (release build; its bundled plugins beside it)
#   SCRATCH  work folder (put it on a tmpfs to measure CPU, not the disk);
#            needs about 4 times the corpus: the corpus, one repository per
#            tool and one working copy of a repository
#   -r REPS  repetitions of the timed step (default 3)
#   -g GENS  generations (default 10)
#   -s SCALE make_corpus.py scale (default 1.0: 1.2 GB)
#   -c MB    a file of MB fresh random bytes replaces the previous one in
#            every generation (default 50), so that forgetting a
#            generation frees whole packs, not only make_corpus.py's small
#            mutations; 0: mutations only
#
# The history (untimed, made once): make_corpus.py generate, then for
# each generation: make_corpus.py mutate (a new seed each time; 1% of the
# text files edited, files added and deleted, bytes inserted into the disk
# image and three media files) and the churn file, then one backup with
# each tool. Every tool backs up the same tree at every step.
#
# The timed step, REPS times per tool, each on a fresh copy (cp -a) of the
# tool's pre-prune repository and of its cache folder: forget every other
# generation (the 1st, 3rd, ...; the latest stays) and prune.
#   obnam:  obnam forget ID... && obnam prune   (default --repack-threshold 20)
#   restic: restic forget ID... --prune         (default --max-unused 5%)
#   borg:   borg prune --keep-daily N && borg compact   (-e none; generation
#           2k-1 and 2k were made on day k with borg create --timestamp, 2k
#           later, so --keep-daily keeps exactly the even ones)
# Each under /usr/bin/time -v: wall, user+sys CPU, peak RSS (of the largest
# process). Then, untimed, on the first repetition: the remaining
# generations are listed and compared with the expected ones, the latest
# is restored and compared with the last tree (make_corpus.py digest), and
# each tool checks its repository (obnam fsck, restic check, borg check).
#
# Prints one markdown table (medians, min-max, sizes before and after) and
# writes SCRATCH/prune-results.tsv (one row per repetition).
set -euo pipefail
REPS=3; GENS=10; SCALE=1.0; CHURN=50; TOOLS="obnam restic borg"
while getopts "r:g:s:c:t:h" o; do
  case $o in
    r) REPS=$OPTARG ;; g) GENS=$OPTARG ;; s) SCALE=$OPTARG ;; c) CHURN=$OPTARG ;;
    t) TOOLS=$OPTARG ;; *) sed -n '2,38p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND-1))
[ $# -eq 2 ] || { sed -n '2,20p' "$0"; exit 2; }
OBNAM=$(realpath "$1"); SCRATCH=$(mkdir -p "$2" && realpath "$2")
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=${SHARED_BENCH:-$(realpath "$HERE/../../../shared/bench")}
MAKE_CORPUS="$BENCH/make_corpus.py"
[ -f "$MAKE_CORPUS" ] || { echo "no $MAKE_CORPUS (set SHARED_BENCH)" >&2; exit 2; }
[ $((GENS % 2)) -eq 0 ] || { echo "GENS must be even" >&2; exit 2; }

DATA="$SCRATCH/data"; RES="$SCRATCH/prune-results.tsv"
export RESTIC_PASSWORD='bench-password-not-secret'
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
# Each tool's cache and state: SCRATCH/home/TOOL, copied with the repository.
tool_env() {
  local home=$1
  export HOME="$home" RESTIC_CACHE_DIR="$home/restic-cache" BORG_BASE_DIR="$home/borg-base"
  export XDG_CACHE_HOME="$home/xdg-cache" XDG_CONFIG_HOME="$home/xdg-config" TMPDIR="$home/tmp"
  mkdir -p "$home/tmp"
}
obnam_() { "$OBNAM" --no-default-configs --quiet --client-name bench "$@"; }
apparent() { du -sb "$1" | cut -f1; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
minmax() { sort -n | awk 'NR==1{lo=$1} {hi=$1} END {print lo "-" hi}'; }

# ---------------------------------------------------------------- history
make_history() {
  rm -rf "$SCRATCH/repo" "$SCRATCH/home" "$DATA"
  mkdir -p "$SCRATCH/repo" "$SCRATCH/home"
  echo "# corpus: make_corpus.py generate --scale $SCALE" >&2
  python3 "$MAKE_CORPUS" generate "$DATA" --scale "$SCALE" >/dev/null
  for t in $TOOLS; do
    mkdir -p "$SCRATCH/home/$t"
    ( tool_env "$SCRATCH/home/$t"
      case $t in
        restic) restic -q -r "$SCRATCH/repo/restic" init >/dev/null ;;
        borg) borg init -e none "$SCRATCH/repo/borg" ;;
      esac )
  done
  for g in $(seq 1 "$GENS"); do
    if [ "$g" -gt 1 ]; then
      rm -f "$DATA/.corpus-v2"
      python3 "$MAKE_CORPUS" mutate "$DATA" --seed $((42 + g)) >/dev/null
      # mutate gives what it changes one fixed time; a file changed again
      # with the same size would then look unchanged to obnam, which
      # (like Obnam) goes by mtime and size, not ctime: give each
      # generation's changes a time of their own.
      python3 - "$DATA" "$g" <<'EOF'
import os, sys
root, g = sys.argv[1], int(sys.argv[2])
mut = 1_700_000_000 + 30 * 86400   # make_corpus.py's MUT_TIME
for d, dirs, files in os.walk(root):
    for n in [d] + [os.path.join(d, f) for f in files]:
        if int(os.lstat(n).st_mtime) == mut:
            os.utime(n, (mut + 3600 * g, mut + 3600 * g), follow_symlinks=False)
EOF
    fi
    if [ "$CHURN" -gt 0 ]; then
      mkdir -p "$DATA/churn"; rm -f "$DATA"/churn/*
      python3 -c "import random,sys; sys.stdout.buffer.write(random.Random($g).randbytes($CHURN << 20))" \
        >"$DATA/churn/gen$g.bin"
    fi
    local day=$(( (g + 1) / 2 )) hour=$(( g % 2 ? 10 : 12 ))
    for t in $TOOLS; do
      ( tool_env "$SCRATCH/home/$t"
        case $t in
          obnam) obnam_ --repository "$SCRATCH/repo/obnam" backup "$DATA" ;;
          restic) restic -q -r "$SCRATCH/repo/restic" backup --host bench "$DATA" ;;
          borg) borg create --timestamp "$(printf '2026-01-%02dT%02d:00:00' "$day" "$hour")" \
                  "$SCRATCH/repo/borg::$(printf 'g%02d' "$g")" "$DATA" ;;
        esac ) >/dev/null
    done
    echo "# generation $g backed up by: $TOOLS" >&2
  done
  python3 "$MAKE_CORPUS" digest "$DATA" | cut -d' ' -f1-2 >"$SCRATCH/last-digest"
}

# The generations of TOOL's repository REPO, oldest first, one per line.
generations() {
  case $1 in
    obnam) obnam_ --repository "$2" genids ;;
    restic) restic -q -r "$2" snapshots --json | python3 -c \
      'import json,sys; [print(s["id"]) for s in sorted(json.load(sys.stdin), key=lambda s: s["time"])]' ;;
    borg) borg list --short "$2" ;;
  esac
}

# Sets CMD: the timed forget-and-prune command of TOOL on REPO.
prune_cmd() {
  local ids
  case $1 in
    obnam) ids=$(generations obnam "$2" | awk 'NR % 2 == 1' | tr '\n' ' ')
      CMD=(sh -c "'$OBNAM' --no-default-configs --quiet --client-name bench --repository '$2' forget $ids && '$OBNAM' --no-default-configs --client-name bench --repository '$2' prune") ;;
    restic) ids=$(generations restic "$2" | awk 'NR % 2 == 1' | tr '\n' ' ')
      # shellcheck disable=SC2206
      CMD=(restic -r "$2" forget $ids --prune) ;;
    borg) CMD=(sh -c "borg prune --keep-daily $((GENS / 2)) '$2' && borg compact '$2'") ;;
  esac
}

# Untimed checks after the first repetition (BEFORE: the generations
# before the prune).
verify() {
  local t=$1 repo=$2 want got out="$SCRATCH/restored"
  want=$(echo "$BEFORE_LIST" | awk 'NR % 2 == 0')
  got=$(generations "$t" "$repo")
  [ "$want" = "$got" ] || { echo "$t: left $got, expected $want" >&2; exit 1; }
  rm -rf "$out"; mkdir -p "$out"
  case $t in
    obnam) obnam_ --repository "$repo" restore --to "$out"
           obnam_ --repository "$repo" fsck --verify-data ;;
    restic) restic -q -r "$repo" restore latest --target "$out"
            restic -q -r "$repo" check --read-data >/dev/null ;;
    borg) (cd "$out" && borg extract "$repo::g$(printf '%02d' "$GENS")")
          borg check --verify-data "$repo" ;;
  esac
  got=$(python3 "$MAKE_CORPUS" digest "$out$DATA" | cut -d' ' -f1-2)
  [ "$got" = "$(cat "$SCRATCH/last-digest")" ] || { echo "$t: restore differs: $got" >&2; exit 1; }
  rm -rf "$out"
  echo "# $t: the $((GENS / 2)) even generations remain, the latest restores exactly, the check is clean" >&2
}

make_history
printf 'tool\trep\twall_s\tcpu_s\tmaxrss_kib\trepo_before\trepo_after\trc\n' >"$RES"
declare -A WALL CPU RSS BEFORE AFTER
for t in $TOOLS; do
  mv "$SCRATCH/repo/$t" "$SCRATCH/pre-$t"; mv "$SCRATCH/home/$t" "$SCRATCH/pre-home-$t"
  for rep in $(seq 1 "$REPS"); do
    # The repository and its cache at the paths they were made at (Borg
    # and restic would otherwise take them for moved ones).
    work="$SCRATCH/repo/$t"; whome="$SCRATCH/home/$t"
    rm -rf "$work" "$whome"
    cp -a "$SCRATCH/pre-$t" "$work"; cp -a "$SCRATCH/pre-home-$t" "$whome"
    before=$(apparent "$work")
    sync
    ( tool_env "$whome"
      BEFORE_LIST=$(generations "$t" "$work")
      prune_cmd "$t" "$work"
      rc=0
      /usr/bin/time -v -o "$SCRATCH/time.txt" "${CMD[@]}" >"$SCRATCH/prune-$t.log" 2>&1 || rc=$?
      after=$(apparent "$work")
      awk -v t="$t" -v rep="$rep" -v b="$before" -v a="$after" -v rc="$rc" -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i] }
        /User time/ { u = $2 } /System time/ { s = $2 } /Maximum resident/ { m = $2 }
        END { printf "%s\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%s\n", t, rep, w, u + s, m, b, a, rc }' \
        "$SCRATCH/time.txt" >>"$RES"
      tail -1 "$RES" | awk -F'\t' '{ printf "  %s rep %s: %s s wall, %s s CPU, %d MiB peak, %d -> %d bytes, rc %s\n", $1, $2, $3, $4, $5 / 1024, $6, $7, $8 }' >&2
      [ "$rc" = 0 ] || { tail -5 "$SCRATCH/prune-$t.log" >&2; exit 1; }
      if [ "$rep" = 1 ]; then verify "$t" "$work"; fi )
  done
  rm -rf "$SCRATCH/repo/$t" "$SCRATCH/home/$t"
  col() { awk -F'\t' -v t="$t" -v c="$1" '$1 == t { print $c }' "$RES"; }
  WALL[$t]="$(col 3 | median) ($(col 3 | minmax))"; CPU[$t]=$(col 4 | median)
  RSS[$t]=$(col 5 | median | awk '{ printf "%d", $1 / 1024 }')
  BEFORE[$t]=$(col 6 | median); AFTER[$t]=$(col 7 | median)
done

echo
echo "| tool | forget + prune, wall s med (min-max) | CPU s med | peak RSS MiB med | repo before MB | repo after MB | freed MB |"
echo "|---|---|---|---|---|---|---|"
for t in $TOOLS; do
  awk -v t="$t" -v w="${WALL[$t]}" -v c="${CPU[$t]}" -v r="${RSS[$t]}" -v b="${BEFORE[$t]}" -v a="${AFTER[$t]}" \
    'BEGIN { printf "| %s | %s | %.2f | %d | %.1f | %.1f | %.1f |\n", t, w, c, r, b / 1e6, a / 1e6, (b - a) / 1e6 }'
done
echo
echo "# $(date -Is) reps=$REPS gens=$GENS scale=$SCALE churn=${CHURN}MB; obnam $("$OBNAM" --version | head -1); $(restic version | head -1); $(borg --version)"
