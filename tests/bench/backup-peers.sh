#!/usr/bin/env bash
# backup-peers.sh - the shared harness's backup, restore and check steps
# (../shared/bench/peers.sh) for obnam in three configurations, its peers,
# and `cp -a` as the floor, all in one run.
#
# usage: tests/bench/backup-peers.sh [-r REPS] [-t "TOOLS"] [-c warm|cold]
#                                    OBNAM CORPUS_V1 SCRATCH
#
#   OBNAM      the obnam binary (release build; its bundled plugins beside it)
#   CORPUS_V1  a pristine tree from make_corpus.py generate
#   SCRATCH    work folder (a tmpfs, to measure CPU rather than the disk)
#   -t TOOLS   default: "copy obnam_none obnam obnam_enc restic" and rustic,
#              borg and borg_none where installed
#   BENCH      environment: the harness folder (default ../shared/bench
#              beside the checkout)
#
# The tools this adds to the harness's (restic, rustic, borg, borg_none,
# obnam with its defaults):
#   obnam_none  obnam with --compress-with none
#   obnam_enc   obnam with --encrypt (OBNAM_PASSPHRASE; Argon2id paid by
#               every run)
#   copy        cp -a: "backup" copies the tree into REPO/NAME (every
#               time: cp has no incremental mode, so only its first
#               backup is a floor worth quoting), "restore" copies the last
#               copy back, "check" does nothing. GNU cp keeps holes
#               (--sparse=auto) and skips reading them where it can.
# Then: python3 $BENCH/summarize.py SCRATCH --ref restic
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
BENCH=${BENCH:-$(cd "$here/../../.." && pwd)/shared/bench}
[ -x "$BENCH/peers.sh" ] || [ -f "$BENCH/peers.sh" ] || { echo "no harness at $BENCH (set BENCH)" >&2; exit 2; }

args=()
tools=""
while getopts "r:t:c:h" o; do
  case $o in
    r|c) args+=("-$o" "$OPTARG") ;;
    t) tools=$OPTARG ;;
    *) sed -n '2,30p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND-1))
[ $# -eq 3 ] || { sed -n '2,12p' "$0"; exit 2; }
OBNAM=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
export OBNAM
if [ -z "$tools" ]; then
  tools="copy obnam_none obnam obnam_enc restic"
  command -v rustic >/dev/null && tools="$tools rustic"
  command -v borg >/dev/null && tools="$tools borg borg_none"
fi

extra=$(mktemp)
trap 'rm -f "$extra"' EXIT
cat > "$extra" <<'TOOLS'
copy_available() { command -v cp >/dev/null; }
copy_version()   { cp --version | head -1; }
copy_env()       { :; }
copy_init()      { CMD=(mkdir -p "$1"); }
copy_backup()    { CMD=(cp -a "$2" "$1/$3"); }
copy_restore()   { CMD=(cp -a "$1/v2" "$2/data"); }
copy_restored_root() { echo "$1/data"; }
copy_check()     { CMD=(true); }

obnam_none_available() { obnam_available; }
obnam_none_version()   { obnam_version; }
obnam_none_env()       { obnam_env "$@"; }
obnam_none_init()      { obnam_init "$@"; }
obnam_none_backup()    { obnam_backup "$@"; CMD+=(--compress-with none); }
obnam_none_restore()   { obnam_restore "$@"; }
obnam_none_restored_root() { obnam_restored_root "$@"; }
obnam_none_check()     { obnam_check "$@"; }

obnam_enc_available() { obnam_available; }
obnam_enc_version()   { obnam_version; }
obnam_enc_env()       { obnam_env "$@"; export OBNAM_PASSPHRASE="$PASSWORD"; }
obnam_enc_init()      { obnam_init "$@"; }
obnam_enc_backup()    { obnam_backup "$@"; CMD+=(--encrypt); }
obnam_enc_restore()   { obnam_restore "$@"; }
obnam_enc_restored_root() { obnam_restored_root "$@"; }
obnam_enc_check()     { obnam_check "$@"; }
TOOLS

# The harness defines its tools, then runs; these functions are defined
# first and call the harness's obnam_* functions only when they run.
bash -c 'source "$1"; shift; PEERS=$1; shift; source "$PEERS"' \
  "$BENCH/peers.sh" "$extra" "$BENCH/peers.sh" "${args[@]}" -t "$tools" "$2" "$3"
