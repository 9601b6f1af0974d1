#!/usr/bin/env bash
# throughput.sh - the same backup and restore into a local folder, over SFTP
# and into Garage S3, all on this machine, in one run.
#
# usage: tests/servers/throughput.sh [-r REPS] OBNAM CORPUS SCRATCH
#
#   OBNAM    the obnam binary (its bundled plugins beside it)
#   CORPUS   the tree to back up (e.g. make_corpus.py's corpus_v1)
#   SCRATCH  work folder; put it on the same file system for every store
#            (a tmpfs measures the protocols, not the disk)
#
# Starts its own sshd (port 2223) and Garage (port 3920) with their data
# under SCRATCH, so the three stores share one file system, and stops them
# at the end. Prints, per store, the median wall time of an initial backup
# and of a full restore, and the ratio of each to the local folder's.
set -euo pipefail
REPS=3
while getopts "r:" o; do case $o in r) REPS=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND-1))
[ $# -eq 3 ] || { sed -n '2,16p' "$0"; exit 2; }
OBNAM=$(realpath "$1"); CORPUS=$(realpath "$2"); SCRATCH=$(mkdir -p "$3" && realpath "$3")
HERE=$(cd "$(dirname "$0")" && pwd)

export SFTP_PORT=2223 SFTP_STATE_DIR="$SCRATCH/sftp-server"
export S3_PORT=3920 S3_STATE_DIR="$SCRATCH/s3-server" S3_FRESH=1
stop() {
  SFTP_STATE_DIR="$SCRATCH/sftp-server" "$HERE/start-sftp.sh" stop >/dev/null 2>&1 || true
  S3_STATE_DIR="$SCRATCH/s3-server" "$HERE/start-s3.sh" stop >/dev/null 2>&1 || true
}
trap stop EXIT
"$HERE/start-sftp.sh" start >/dev/null
. "$SFTP_STATE_DIR/env.sh"
"$HERE/start-s3.sh" start >/dev/null
. "$S3_STATE_DIR/env.sh"
"$HERE/start-sftp.sh" trust

calc() { awk "BEGIN { print $1 }"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A BACKUP RESTORE
for store in local sftp s3; do
  b=(); r=()
  for rep in $(seq 1 "$REPS"); do
    case $store in
      local) url="$SCRATCH/local-repo-$rep"; args=() ;;
      sftp)  url="$SFTP_URL/repo-$rep"; args=(--ssh-key "$SFTP_KEY") ;;
      s3)    url="s3://$S3_BUCKET/repo-$rep"; args=(--s3-endpoint "$S3_ENDPOINT") ;;
    esac
    t0=$(date +%s.%N)
    "$OBNAM" --no-default-configs --quiet -r "$url" "${args[@]}" --client-name bench backup "$CORPUS"
    t1=$(date +%s.%N)
    rm -rf "$SCRATCH/restored"
    "$OBNAM" --no-default-configs --quiet -r "$url" "${args[@]}" --client-name bench restore --to "$SCRATCH/restored"
    t2=$(date +%s.%N)
    diff -r "$CORPUS" "$SCRATCH/restored$CORPUS" >/dev/null || { echo "restore from $store differs" >&2; exit 1; }
    rm -rf "$SCRATCH/restored" "$SCRATCH/local-repo-$rep" "$SFTP_ROOT/repo-$rep"
    b+=("$(calc "$t1 - $t0")"); r+=("$(calc "$t2 - $t1")")
    echo "  $store rep $rep: backup ${b[-1]} s, restore ${r[-1]} s" >&2
  done
  BACKUP[$store]=$(printf '%s\n' "${b[@]}" | median)
  RESTORE[$store]=$(printf '%s\n' "${r[@]}" | median)
done

bytes=$(du -sb "$CORPUS" | cut -f1)
echo "| store | backup (median of $REPS) | MB/s | vs local | restore | MB/s | vs local |"
echo "|---|---|---|---|---|---|---|"
for store in local sftp s3; do
  b=${BACKUP[$store]}; r=${RESTORE[$store]}
  printf '| %s | %.2f s | %.0f | %.2f | %.2f s | %.0f | %.2f |\n' "$store" "$b" \
    "$(calc "$bytes / $b / 1000000")" "$(calc "${BACKUP[local]} / $b")" \
    "$r" "$(calc "$bytes / $r / 1000000")" "$(calc "${RESTORE[local]} / $r")"
done
