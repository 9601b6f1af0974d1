#!/usr/bin/env bash
# mount-peers.sh - read a whole backed-up corpus through a FUSE mount:
# obnam mount, restic mount and borg mount on the same corpus, in one run.
#
# usage: tests/bench/mount-peers.sh [-r REPS] [-s SCALE] [-t "obnam restic borg"]
#                                   OBNAM SCRATCH
#
#   OBNAM    the obnam binary (release build; its bundled plugins beside it)
#   SCRATCH  work folder (put it on a tmpfs to measure CPU, not the disk);
#            needs about 4 times the corpus: the corpus and one repository
#            per tool
#   -r REPS  repetitions of the timed step (default 3)
#   -s SCALE make_corpus.py scale (default 1.0: 1.2 GB, 20,021 files)
#   -t TOOLS the tools (default "obnam restic borg")
#
# Made once, untimed: make_corpus.py generate, then one backup of it with
# each tool (obnam's defaults; restic's defaults; borg -e none with its
# default lz4), each tool's repository and cache in SCRATCH.
#
# The timed step, REPS times per tool, each with a fresh mount (so the
# kernel's page cache of the mount is empty; the repository's files are in
# the machine's page cache for every tool alike):
#   obnam:  obnam mount MNT                  read MNT/latest/CORPUS
#   restic: restic mount MNT                 read MNT/snapshots/latest/CORPUS
#   borg:   borg mount -f REPO::a MNT        read MNT/CORPUS
# The mount's own process runs under /usr/bin/time -v (its CPU and peak
# RSS, written when it is unmounted). Timed: `find ROOT -type f -print0 |
# xargs -0 cat > /dev/null`, the cat of every file, one process after
# another, from one run; its wall time is the figure. Then, on the first
# repetition only and untimed, make_corpus.py digest of the mounted tree
# (content, mode, mtime) is compared with the corpus's. Then the mount is
# unmounted with fusermount3 -u and the script waits for the tool to end.
#
# restic (Go) looks for `fusermount`; where only fuse3's `fusermount3` is
# installed, a `fusermount` link to it in SCRATCH/bin comes first on PATH.
# borg mount needs python3-llfuse (Debian) or pyfuse3.
#
# Prints one markdown table (medians, min-max) and writes
# SCRATCH/mount-results.tsv (one row per repetition).
set -euo pipefail
REPS=3; SCALE=1.0; TOOLS="obnam restic borg"
while getopts "r:s:t:h" o; do
  case $o in
    r) REPS=$OPTARG ;; s) SCALE=$OPTARG ;; t) TOOLS=$OPTARG ;; *) sed -n '2,38p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND-1))
[ $# -eq 2 ] || { sed -n '2,16p' "$0"; exit 2; }
OBNAM=$(realpath "$1"); SCRATCH=$(mkdir -p "$2" && realpath "$2")
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=${SHARED_BENCH:-$(realpath "$HERE/../../../shared/bench")}
MAKE_CORPUS="$BENCH/make_corpus.py"
[ -f "$MAKE_CORPUS" ] || { echo "no $MAKE_CORPUS (set SHARED_BENCH)" >&2; exit 2; }
command -v fusermount3 >/dev/null || { echo "fusermount3 is needed (apt install fuse3)" >&2; exit 2; }

DATA="$SCRATCH/data"; MNT="$SCRATCH/mnt"; RES="$SCRATCH/mount-results.tsv"
export RESTIC_PASSWORD='bench-password-not-secret'
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
mkdir -p "$SCRATCH/bin"
if ! command -v fusermount >/dev/null; then ln -sf "$(command -v fusermount3)" "$SCRATCH/bin/fusermount"; fi
export PATH="$SCRATCH/bin:$PATH"
tool_env() {
  local home=$1
  export HOME="$home" RESTIC_CACHE_DIR="$home/restic-cache" BORG_BASE_DIR="$home/borg-base"
  export XDG_CACHE_HOME="$home/xdg-cache" XDG_CONFIG_HOME="$home/xdg-config" TMPDIR="$home/tmp"
  mkdir -p "$home/tmp"
}
obnam_() { "$OBNAM" --no-default-configs --quiet --client-name bench "$@"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
minmax() { sort -n | awk 'NR==1{lo=$1} {hi=$1} END {print lo "-" hi}'; }
mounted() { awk -v m="$MNT" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; }
# The wall, CPU (user+sys) and peak RSS (KiB) in a /usr/bin/time -v file.
time_fields() {
  awk -F': ' '
    /Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i] }
    /User time/ { u = $2 } /System time/ { s = $2 } /Maximum resident/ { m = $2 }
    END { printf "%.2f\t%.2f\t%s\n", w, u + s, m }' "$1"
}

# ---------------------------------------------------------------- set-up
rm -rf "$SCRATCH/repo" "$SCRATCH/home" "$DATA"
mkdir -p "$SCRATCH/repo" "$SCRATCH/home" "$MNT"
echo "# corpus: make_corpus.py generate --scale $SCALE" >&2
python3 "$MAKE_CORPUS" generate "$DATA" --scale "$SCALE" >/dev/null
BYTES=$(find "$DATA" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
python3 "$MAKE_CORPUS" digest "$DATA" | cut -d' ' -f1-2 >"$SCRATCH/digest"
for t in $TOOLS; do
  mkdir -p "$SCRATCH/home/$t"
  ( tool_env "$SCRATCH/home/$t"
    case $t in
      obnam) obnam_ --repository "$SCRATCH/repo/obnam" backup "$DATA" ;;
      restic) restic -q -r "$SCRATCH/repo/restic" init
              restic -q -r "$SCRATCH/repo/restic" backup --host bench "$DATA" ;;
      borg) borg init -e none "$SCRATCH/repo/borg"
            borg create "$SCRATCH/repo/borg::a" "$DATA" ;;
    esac ) >/dev/null
  echo "# $t: backed up" >&2
done

# Sets CMD (the mount, in the foreground) and ROOT (the corpus in it).
mount_cmd() {
  case $1 in
    obnam) CMD=("$OBNAM" --no-default-configs --client-name bench --repository "$SCRATCH/repo/obnam" mount "$MNT")
           ROOT="$MNT/latest$DATA" ;;
    restic) CMD=(restic -r "$SCRATCH/repo/restic" mount "$MNT")
            ROOT="$MNT/snapshots/latest$DATA" ;;
    borg) CMD=(borg mount -f "$SCRATCH/repo/borg::a" "$MNT")
          ROOT="$MNT$DATA" ;;
  esac
}

printf 'tool\trep\tread_wall_s\tread_cpu_s\tmount_wall_s\tmount_cpu_s\tmount_maxrss_kib\tverified\n' >"$RES"
declare -A WALL MBS CPU RSS OK
for t in $TOOLS; do
  for rep in $(seq 1 "$REPS"); do
    ( tool_env "$SCRATCH/home/$t"
      mount_cmd "$t"
      /usr/bin/time -v -o "$SCRATCH/mount-time.txt" "${CMD[@]}" >"$SCRATCH/mount-$t.log" 2>&1 &
      tpid=$!
      for _ in $(seq 1 600); do
        if mounted && [ -d "$ROOT" ]; then break; fi
        kill -0 "$tpid" 2>/dev/null || { cat "$SCRATCH/mount-$t.log" >&2; exit 1; }
        sleep 0.1
      done
      [ -d "$ROOT" ] || { echo "$t: $ROOT did not appear" >&2; cat "$SCRATCH/mount-$t.log" >&2; exit 1; }
      sync
      /usr/bin/time -v -o "$SCRATCH/read-time.txt" \
        sh -c 'find "$1" -type f -print0 | xargs -0 cat > /dev/null' sh "$ROOT"
      verified=-
      if [ "$rep" = 1 ]; then
        got=$(python3 "$MAKE_CORPUS" digest "$ROOT" | cut -d' ' -f1-2)
        if [ "$got" = "$(cat "$SCRATCH/digest")" ]; then verified=yes
        else verified="no: $got"; fi
      fi
      fusermount3 -u "$MNT"
      wait "$tpid" || true
      read -r rwall rcpu _ < <(time_fields "$SCRATCH/read-time.txt")
      read -r mwall mcpu mrss < <(time_fields "$SCRATCH/mount-time.txt")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$rep" "$rwall" "$rcpu" "$mwall" "$mcpu" "$mrss" "$verified" >>"$RES"
      echo "  $t rep $rep: read $rwall s wall; the mount's process $mcpu s CPU, $((mrss / 1024)) MiB peak; verified $verified" >&2
      if mounted; then echo "$t: still mounted" >&2; exit 1; fi )
  done
  col() { awk -F'\t' -v t="$t" -v c="$1" '$1 == t { print $c }' "$RES"; }
  WALL[$t]="$(col 3 | median) ($(col 3 | minmax))"
  MBS[$t]=$(col 3 | median | awk -v b="$BYTES" '{ printf "%.0f", b / 1e6 / $1 }')
  CPU[$t]=$(col 6 | median); RSS[$t]=$(col 7 | median | awk '{ printf "%d", $1 / 1024 }')
  OK[$t]=$(awk -F'\t' -v t="$t" '$1 == t && $2 == 1 { print $8 }' "$RES")
done

echo
echo "| tool | cat of every file, wall s med (min-max) | MB/s | mount process CPU s med | its peak RSS MiB med | tree as backed up |"
echo "|---|---|---|---|---|---|"
for t in $TOOLS; do
  echo "| $t | ${WALL[$t]} | ${MBS[$t]} | ${CPU[$t]} | ${RSS[$t]} | ${OK[$t]} |"
done
echo
echo "# $(date -Is) reps=$REPS scale=$SCALE ($BYTES bytes in $(find "$DATA" -type f | wc -l) files); obnam $("$OBNAM" --version | head -1); $(restic version | head -1); $(borg --version)"
