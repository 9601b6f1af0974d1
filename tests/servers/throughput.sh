#!/usr/bin/env bash
# throughput.sh - the same backup and restore into a local folder, over SFTP
# and into Garage S3, all on this machine, in one run.
#
# usage: tests/servers/throughput.sh [-r REPS] [-p] OBNAM CORPUS SCRATCH
#
#   OBNAM    the obnam binary (its bundled plugins beside it)
#   CORPUS   the tree to back up (e.g. make_corpus.py's corpus_v1)
#   SCRATCH  work folder; put it on the same file system for every store
#            (a tmpfs measures the protocols, not the disk)
#
# Starts its own sshd (port 2223) and Garage (port 3920) with their data
# under SCRATCH, so the three stores share one file system, and stops them
# at the end. Prints, per store, the median wall time of an initial backup
# and of a full restore, and the ratio of each to the local folder's; then
# the processor time the whole machine spent in each step (obnam and the
# server together: they share the processors) and the wall time that
# processor time alone would need on this machine's processors (its
# floor), so that a remote store's ratio can be read against what the
# machine allows.
# With -p, restic (from PATH) does the same into a local folder and into
# the same Garage, as a reference for what the machine allows.
set -euo pipefail
REPS=3
PEERS=0
while getopts "r:p" o; do case $o in r) REPS=$OPTARG ;; p) PEERS=1 ;; *) exit 2 ;; esac; done
shift $((OPTIND-1))
[ $# -eq 3 ] || { sed -n '2,18p' "$0"; exit 2; }
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
NCPU=$(nproc)
# Seconds of processor time the machine has spent busy so far (user, nice,
# system, irq, softirq; not steal, which the hypervisor took).
busy() { awk '/^cpu /{print ($2+$3+$4+$7+$8)/100}' /proc/stat; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# The end of one repetition of STORE (times t0, t1, t2 taken): check the
# restore against the corpus, remove what it made (the restored tree and
# the given paths), restart Garage empty if it was used, so that every
# run starts from an empty store (earlier repetitions' objects would fill
# the tmpfs and grow Garage's metadata), and record the times in b and r.
finish_rep() {
  local store=$1; shift
  diff -r "$CORPUS" "$SCRATCH/restored$CORPUS" >/dev/null || { echo "restore from $store differs" >&2; exit 1; }
  rm -rf "$SCRATCH/restored" "$@"
  case $store in
    s3|restic-s3)
      "$HERE/start-s3.sh" stop >/dev/null 2>&1
      "$HERE/start-s3.sh" start >/dev/null 2>&1 ;;
  esac
  b+=("$(calc "$t1 - $t0")"); r+=("$(calc "$t2 - $t1")")
  cb+=("$(calc "$c1 - $c0")"); cr+=("$(calc "$c2 - $c1")")
  echo "  $store rep $rep: backup ${b[-1]} s, restore ${r[-1]} s" >&2
}

# The medians of STORE's repetitions.
record_medians() {
  BACKUP[$1]=$(printf '%s\n' "${b[@]}" | median)
  RESTORE[$1]=$(printf '%s\n' "${r[@]}" | median)
  BACKUP_CPU[$1]=$(printf '%s\n' "${cb[@]}" | median)
  RESTORE_CPU[$1]=$(printf '%s\n' "${cr[@]}" | median)
}

declare -A BACKUP RESTORE BACKUP_CPU RESTORE_CPU
for store in local sftp s3; do
  b=(); r=(); cb=(); cr=()
  for rep in $(seq 1 "$REPS"); do
    case $store in
      local) url="$SCRATCH/local-repo-$rep"; args=() ;;
      sftp)  url="$SFTP_URL/repo-$rep"; args=(--ssh-key "$SFTP_KEY") ;;
      s3)    url="s3://$S3_BUCKET/repo-$rep"; args=(--s3-endpoint "$S3_ENDPOINT") ;;
    esac
    c0=$(busy); t0=$(date +%s.%N)
    "$OBNAM" --no-default-configs --quiet -r "$url" "${args[@]}" --client-name bench backup "$CORPUS"
    t1=$(date +%s.%N); c1=$(busy)
    rm -rf "$SCRATCH/restored"
    "$OBNAM" --no-default-configs --quiet -r "$url" "${args[@]}" --client-name bench restore --to "$SCRATCH/restored"
    t2=$(date +%s.%N); c2=$(busy)
    finish_rep "$store" "$SCRATCH/local-repo-$rep" "$SFTP_ROOT/repo-$rep"
  done
  record_medians "$store"
done

# restic, for reference: the same steps into a local folder and Garage.
STORES=(local sftp s3)
if [ "$PEERS" = 1 ]; then
  export RESTIC_PASSWORD=bench
  for store in restic-local restic-s3; do
    b=(); r=(); cb=(); cr=()
    for rep in $(seq 1 "$REPS"); do
      case $store in
        restic-local) url="$SCRATCH/restic-repo-$rep" ;;
        restic-s3) url="s3:$S3_ENDPOINT/$S3_BUCKET/restic-$rep" ;;
      esac
      restic -q -r "$url" init >/dev/null
      c0=$(busy); t0=$(date +%s.%N)
      restic -q -r "$url" backup "$CORPUS" >/dev/null
      t1=$(date +%s.%N); c1=$(busy)
      rm -rf "$SCRATCH/restored"
      restic -q -r "$url" restore latest --target "$SCRATCH/restored" >/dev/null
      t2=$(date +%s.%N); c2=$(busy)
      finish_rep "$store" "$SCRATCH/restic-repo-$rep"
    done
    record_medians "$store"
  done
  STORES+=(restic-local restic-s3)
fi

bytes=$(du -sb "$CORPUS" | cut -f1)
echo "| store | backup (median of $REPS) | MB/s | vs local | restore | MB/s | vs local |"
echo "|---|---|---|---|---|---|---|"
for store in "${STORES[@]}"; do
  b=${BACKUP[$store]}; r=${RESTORE[$store]}
  # restic's rows are compared with restic's own local folder.
  base=local; case $store in restic-*) base=restic-local ;; esac
  printf '| %s | %.2f s | %.0f | %.2f | %.2f s | %.0f | %.2f |\n' "$store" "$b" \
    "$(calc "$bytes / $b / 1000000")" "$(calc "${BACKUP[$base]} / $b")" \
    "$r" "$(calc "$bytes / $r / 1000000")" "$(calc "${RESTORE[$base]} / $r")"
done

echo
echo "Processor time of the whole machine in each step (medians; $NCPU processors):"
echo "| store | backup CPU s | backup floor | wall / floor | restore CPU s | restore floor | wall / floor |"
echo "|---|---|---|---|---|---|---|"
for store in "${STORES[@]}"; do
  bc=${BACKUP_CPU[$store]}; rc=${RESTORE_CPU[$store]}
  printf '| %s | %.2f | %.2f s | %.2f | %.2f | %.2f s | %.2f |\n' "$store" \
    "$bc" "$(calc "$bc / $NCPU")" "$(calc "${BACKUP[$store]} / ($bc / $NCPU)")" \
    "$rc" "$(calc "$rc / $NCPU")" "$(calc "${RESTORE[$store]} / ($rc / $NCPU)")"
done
