#!/usr/bin/env bash
# Compares file systems side by side on this machine (loopback only) and prints one table:
# MirrorFS on Swift-S3, s3fs and rclone on the same Swift, MirrorFS on a /dev/shm file store, and bindfs over /dev/shm.
#
#   bash bench/fs-compare.sh [--quick] [--big-mib N] [--small N] [--remote-small-max N] [--fs LIST]
#
#   --big-mib N            size of the big sequential file (default 1024; --quick: 64)
#   --small N              number of 4 KiB files (default 1000; --quick: 100)
#   --remote-small-max N   cap on the small-file count for s3fs and rclone, which create only ~8 files/s (default 200)
#   --fs LIST              comma-separated subset of: mfs-s3,s3fs,rclone,mfs-shm,bindfs (default: all)
#   MFS_MOUNT_ARGS="..."   extra options for the mirrorfs mounts (environment), e.g. "--prefetch 16"
#
# Needs root (FUSE mounts, drop_caches, apt-get). Installs s3fs, rclone, bindfs and the Swift packages with apt when
# missing; builds the Release binaries when missing. Everything it starts is stopped on exit; state lives in a temp
# dir under /tmp (Swift data) and /dev/shm (tmpfs stores), both removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
META_BIN=$ROOT/src/MetaServer/bin/Release/net10.0/mirrorfs-meta
CLI_BIN=$ROOT/src/Client/bin/Release/net10.0/mirrorfs
OBJBENCH_DLL=$ROOT/bench/ObjBench/bin/Release/net10.0/mirrorfs-objbench.dll
readonly MOUNT_WAIT_S=30
readonly UMOUNT_WAIT_S=60
readonly META_WAIT_S=30
readonly BUCKET_TRIES_MAX=10
readonly SMALL_BYTES=4096
readonly ALL_FS=(mfs-s3 s3fs rclone mfs-shm bindfs)

BIG_MIB=1024
SMALL_N=1000
REMOTE_SMALL_MAX=200
QUICK=0
FS_LIST=$(IFS=,; echo "${ALL_FS[*]}")
BIG_SET=0
SMALL_SET=0

say() { printf 'fs-compare: %s\n' "$*" >&2; }
die() { printf 'fs-compare: %s\n' "$*" >&2; exit 1; }
positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 '$2' is not a positive integer: pass e.g. $1 100"; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1; shift ;;
    --big-mib) positive "$1" "${2:-}"; BIG_MIB=$2; BIG_SET=1; shift 2 ;;
    --small) positive "$1" "${2:-}"; SMALL_N=$2; SMALL_SET=1; shift 2 ;;
    --remote-small-max) positive "$1" "${2:-}"; REMOTE_SMALL_MAX=$2; shift 2 ;;
    --fs) FS_LIST=${2:-}; shift 2 ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1': see 'bash bench/fs-compare.sh --help'" ;;
  esac
done
if ((QUICK)); then
  ((BIG_SET)) || BIG_MIB=64
  ((SMALL_SET)) || SMALL_N=100
fi
IFS=, read -r -a FSES <<<"$FS_LIST"
for f in "${FSES[@]}"; do
  [[ " ${ALL_FS[*]} " == *" $f "* ]] || die "unknown file system '$f' in --fs: use some of ${ALL_FS[*]}"
done

[[ $(id -u) == 0 ]] || die "needs root (FUSE mounts, drop_caches): run it with sudo"

# ---------- dependencies ----------
need_pkgs=()
command -v fusermount3 >/dev/null || need_pkgs+=(fuse3)
command -v s3fs >/dev/null || need_pkgs+=(s3fs)
command -v rclone >/dev/null || need_pkgs+=(rclone)
command -v bindfs >/dev/null || need_pkgs+=(bindfs)
command -v swift-proxy-server >/dev/null || need_pkgs+=(swift swift-proxy swift-object swift-container swift-account)
if ((${#need_pkgs[@]})); then
  say "installing ${need_pkgs[*]} with apt-get"
  apt-get install -y "${need_pkgs[@]}" >/dev/null || die "apt-get install ${need_pkgs[*]} failed: run it by hand to see why"
fi
build() {
  [[ -e $2 ]] && return 0
  say "building $1 (Release)"
  dotnet build "$1" -c Release -nologo -v quiet >/dev/null || die "building $1 failed: run 'dotnet build $1 -c Release' to see why"
}
build src/MetaServer "$META_BIN"
build src/Client "$CLI_BIN"
build bench/ObjBench "$OBJBENCH_DLL"

# ---------- state and cleanup ----------
TMP=$(mktemp -d /tmp/fs-compare.XXXXXX)
SHM=$(mktemp -d /dev/shm/fs-compare.XXXXXX)
PIDS_FILE=$TMP/pids        # background daemons we started (s3fs, rclone, bindfs in the foreground mode)
RESULTS=$TMP/results       # lines: FS TEST VALUE
: >"$PIDS_FILE"
: >"$RESULTS"
SWIFT_DIR=$TMP/swift
SWIFT_STARTED=0

mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

cleanup() {
  local rc=$? m pid alive
  set +e
  # Mount points we made, deepest first; a mount that refuses is detached lazily.
  for m in $(awk -v t="$TMP/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  while read -r pid; do
    [[ -n $pid ]] && kill "$pid" 2>/dev/null
  done <"$PIDS_FILE"
  # Give them 5 s to exit before their files are removed.
  for _ in $(seq 1 50); do
    alive=0
    while read -r pid; do [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && alive=1; done <"$PIDS_FILE"
    ((alive)) || break
    sleep 0.1
  done
  ((SWIFT_STARTED)) && bash "$ROOT/deploy/swift/swift-s3.sh" stop "$SWIFT_DIR" >/dev/null 2>&1
  if ((rc != 0)); then
    say "failed (exit $rc); logs were in $TMP:"
    for m in "$TMP"/*.log; do [[ -f $m ]] && { echo "--- $m" >&2; tail -n 15 "$m" >&2; }; done
  fi
  rm -rf --one-file-system "$TMP" "$SHM"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { d = b - a; if (d <= 0) d = 1e-9; printf "%.1f", n / d }'; }
record() { echo "$1 $2 $3" >>"$RESULTS"; say "$1 $2 = $3"; }

wait_mounted() {
  local i
  for ((i = 0; i < MOUNT_WAIT_S * 10; i++)); do mounted "$1" && return 0; sleep 0.1; done
  die "$1 was not mounted within $MOUNT_WAIT_S s; see the logs in $TMP"
}
wait_gone() {
  local pid=$1 i
  for ((i = 0; i < UMOUNT_WAIT_S * 10; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  die "process $pid still runs $UMOUNT_WAIT_S s after its unmount"
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# ---------- Swift and buckets ----------
SWIFT_PORT=$(free_port)
say "starting Swift s3api on 127.0.0.1:$SWIFT_PORT"
SWIFT_STARTED=1
bash deploy/swift/swift-s3.sh start "$SWIFT_DIR" "$SWIFT_PORT" >"$TMP/swift-start.log" 2>&1 \
  || die "Swift did not start; see $SWIFT_DIR/*.log"
S3_ENDPOINT=http://127.0.0.1:$SWIFT_PORT
auth=$(curl -sS -i -H "X-Auth-User: test:tester" -H "X-Auth-Key: testing" "$S3_ENDPOINT/auth/v1.0")
TOKEN=$(tr -d '\r' <<<"$auth" | awk -F': ' 'tolower($1) == "x-auth-token" { print $2 }')
STORAGE_URL=$(tr -d '\r' <<<"$auth" | awk -F': ' 'tolower($1) == "x-storage-url" { print $2 }')
[[ -n $TOKEN && -n $STORAGE_URL ]] || die "Swift auth at $S3_ENDPOINT/auth/v1.0 gave no token"
for b in objbench mfs s3fs rclone; do
  # A fresh Swift can answer 503 while its account is being created: retry a few times.
  for ((i = 0; i < BUCKET_TRIES_MAX; i++)); do
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H "X-Auth-Token: $TOKEN" "$STORAGE_URL/$b")
    [[ $code == 201 || $code == 202 ]] && break
    sleep 1
  done
  [[ $code == 201 || $code == 202 ]] || die "creating bucket $b on Swift gave HTTP $code after $BUCKET_TRIES_MAX tries"
done
s3uri() { echo "s3://test%3Atester:testing@$1?endpoint=$S3_ENDPOINT&region=us-east-1&path-style=true"; }

# ---------- raw store limit ----------
if [[ " ${FSES[*]} " =~ " mfs-s3 "|" s3fs "|" rclone " ]]; then
  say "objbench: 4 MiB PUT/GET at 16 parallel"
  big_count=32; ((QUICK)) && big_count=16
  dotnet "$OBJBENCH_DLL" "$(s3uri objbench)" --parallel 16 --big-count "$big_count" --small-count 16 \
    >"$TMP/objbench.out" 2>"$TMP/objbench.log" || die "objbench failed; see $TMP/objbench.log"
  put=$(awk -F'|' '$1 ~ /^put 4 MiB/ { split($2, a, " "); print a[1] }' "$TMP/objbench.out")
  get=$(awk -F'|' '$1 ~ /^get 4 MiB/ { split($2, a, " "); print a[1] }' "$TMP/objbench.out")
  record limit objbench "${put:-?}/${get:-?}"
fi

# ---------- MirrorFS: one metaserver per volume (a metaserver serves one volume) ----------
declare -A META_PORT=() META_DIR=()
start_meta_and_format() {
  # $3: where the metaserver keeps its log (default under $TMP, on disk); the tmpfs column keeps it on tmpfs too, so
  # that nothing of mirrorfs/shm touches a disk, as nothing of bindfs over tmpfs does.
  local vol=$1 storage=$2 dir=${3:-$TMP}/meta-$1 port pid i
  port=$(free_port)
  mkdir -p "$dir"
  say "starting metaserver for $vol on 127.0.0.1:$port"
  "$META_BIN" serve --data "$dir" --listen "127.0.0.1:$port" >"$TMP/meta-$vol.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >>"$PIDS_FILE"
  for ((i = 0; i < META_WAIT_S * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || die "metaserver for $vol exited; see $TMP/meta-$vol.log"
    [[ -s $dir/token ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "metaserver for $vol did not listen within $META_WAIT_S s"
  "$CLI_BIN" format "mirrorfs://127.0.0.1:$port/$vol" "$vol" --token-file "$dir/token" --storage "$storage" \
    >>"$TMP/format.log" 2>&1 || die "formatting volume $vol failed; see $TMP/format.log"
  META_PORT[$vol]=$port
  META_DIR[$vol]=$dir
}
if [[ " ${FSES[*]} " == *" mfs-s3 "* ]]; then
  start_meta_and_format mfss3 "s3://test%3Atester:testing@mfs/mirrorfs?endpoint=$S3_ENDPOINT&region=us-east-1&path-style=true"
fi
if [[ " ${FSES[*]} " == *" mfs-shm "* ]]; then
  mkdir -p "$SHM/mfs-blocks"
  start_meta_and_format mfsshm "file://$SHM/mfs-blocks" "$SHM"
fi

# ---------- mount / unmount per file system ----------
# A daemon run in the foreground under our shell, so its pid is ours to wait for and to stop.
start_daemon() {
  local log=$1
  shift
  "$@" >>"$log" 2>&1 </dev/null &
  DAEMON_PID=$!
  echo "$DAEMON_PID" >>"$PIDS_FILE"
}

do_mount() {
  local fs=$1 mnt=$2
  mkdir -p "$mnt"
  case $fs in
    mfs-s3|mfs-shm)
      local vol=mfss3
      [[ $fs == mfs-shm ]] && vol=mfsshm
      "$CLI_BIN" mount "mirrorfs://127.0.0.1:${META_PORT[$vol]}/$vol" "$mnt" --background --token-file "${META_DIR[$vol]}/token" \
        --log "$TMP/$fs-mount.log" ${MFS_MOUNT_ARGS:-} >>"$TMP/$fs.log" 2>&1 || die "mirrorfs mount of $vol failed; see $TMP/$fs.log"
      DAEMON_PID= ;;
    s3fs)
      start_daemon "$TMP/s3fs.log" env AWS_ACCESS_KEY_ID=test:tester AWS_SECRET_ACCESS_KEY=testing \
        s3fs s3fs "$mnt" -f -o "url=$S3_ENDPOINT" -o use_path_request_style -o endpoint=us-east-1 ;;
    rclone)
      start_daemon "$TMP/rclone.log" env -u AWS_CA_BUNDLE RCLONE_CONFIG_SW_TYPE=s3 RCLONE_CONFIG_SW_PROVIDER=Other \
        RCLONE_CONFIG_SW_ENDPOINT="$S3_ENDPOINT" RCLONE_CONFIG_SW_ACCESS_KEY_ID=test:tester \
        RCLONE_CONFIG_SW_SECRET_ACCESS_KEY=testing RCLONE_CONFIG_SW_FORCE_PATH_STYLE=true \
        rclone mount sw:rclone "$mnt" --vfs-cache-mode off ;;
    bindfs)
      mkdir -p "$SHM/bindfs-src"
      start_daemon "$TMP/bindfs.log" bindfs -f "$SHM/bindfs-src" "$mnt" ;;
  esac
  wait_mounted "$mnt"
}

do_umount() {
  local fs=$1 mnt=$2
  case $fs in
    mfs-s3|mfs-shm) "$CLI_BIN" umount "$mnt" >>"$TMP/$fs.log" 2>&1 || die "mirrorfs umount $mnt failed; see $TMP/$fs.log" ;;
    *)
      umount "$mnt" || die "umount $mnt ($fs) failed"
      wait_gone "$DAEMON_PID" ;;
  esac
  local i
  for ((i = 0; i < UMOUNT_WAIT_S * 10; i++)); do mounted "$mnt" || return 0; sleep 0.1; done
  die "$mnt ($fs) still mounted $UMOUNT_WAIT_S s after its unmount"
}

# Fresh mount with a cold page cache.
fresh_mount() { drop_caches; do_mount "$1" "$2"; }

# Small-file operations in one process, so the per-file cost is the file system's, not fork/exec's.
cat >"$TMP/small.py" <<'EOF'
import os, sys, time
op, d, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = os.urandom(size)
t = time.monotonic()
for i in range(n):
    p = os.path.join(d, "f%06d" % i)
    if op == "create":
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.close(fd)
    elif op == "stat":
        if os.stat(p).st_size != size:
            sys.exit("%s has %d bytes, expected %d" % (p, os.stat(p).st_size, size))
    else:
        fd = os.open(p, os.O_RDONLY)
        got = 0
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            got += len(b)
        os.close(fd)
        if got != size:
            sys.exit("%s gave %d bytes, expected %d" % (p, got, size))
print("%.6f" % (time.monotonic() - t))
EOF
small_op() { /usr/bin/python3 "$TMP/small.py" "$1" "$2" "$3" "$SMALL_BYTES"; }

# ---------- the tests ----------
SRC=$SHM/big.src
say "writing a ${BIG_MIB} MiB random source file in /dev/shm"
head -c "$((BIG_MIB * 1024 * 1024))" /dev/urandom >"$SRC"

bench_fs() {
  local fs=$1 mnt=$TMP/mnt-$1 t0 t1 secs n=$SMALL_N
  [[ $fs == s3fs || $fs == rclone ]] && ((n > REMOTE_SMALL_MAX)) && n=$REMOTE_SMALL_MAX
  say "== $fs"

  # 1. big sequential write with fsync, then a cold sequential read.
  fresh_mount "$fs" "$mnt"
  t0=$(now)
  dd if="$SRC" of="$mnt/big" bs=1M count="$BIG_MIB" conv=fsync status=none
  t1=$(now)
  record "$fs" big-write "$(rate "$BIG_MIB" "$t0" "$t1")"
  do_umount "$fs" "$mnt"
  fresh_mount "$fs" "$mnt"
  t0=$(now)
  dd if="$mnt/big" of=/dev/null bs=1M status=none
  t1=$(now)
  record "$fs" big-read "$(rate "$BIG_MIB" "$t0" "$t1")"
  local got
  got=$(stat -c %s "$mnt/big")
  [[ $got == $((BIG_MIB * 1024 * 1024)) ]] || die "$fs: $mnt/big has $got bytes after remount, expected $((BIG_MIB * 1024 * 1024))"
  rm -f "$mnt/big"

  # 2. small files: create, (fresh mount) stat, (fresh mount) read.
  mkdir "$mnt/small"
  record "$fs" small-count "$n"
  secs=$(small_op create "$mnt/small" "$n")
  record "$fs" small-create "$(rate "$n" 0 "$secs")"
  t0=$(now)
  do_umount "$fs" "$mnt"
  t1=$(now)
  record "$fs" small-umount "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
  fresh_mount "$fs" "$mnt"
  secs=$(small_op stat "$mnt/small" "$n")
  record "$fs" small-stat "$(rate "$n" 0 "$secs")"
  do_umount "$fs" "$mnt"
  fresh_mount "$fs" "$mnt"
  secs=$(small_op read "$mnt/small" "$n")
  record "$fs" small-read "$(rate "$n" 0 "$secs")"
  do_umount "$fs" "$mnt"
}

for fs in "${FSES[@]}"; do
  # One file system failing must not hide the others' figures: its cells read "fail".
  set +e
  (set -e; bench_fs "$fs")
  rc=$?
  set -e
  if ((rc != 0)); then
    say "$fs failed (exit $rc); see $TMP/$fs*.log"
    [[ -f $TMP/$fs.log ]] && tail -n 10 "$TMP/$fs.log" >&2
    record "$fs" failed 1
    m=$TMP/mnt-$fs
    mounted "$m" && { umount "$m" 2>/dev/null || umount -l "$m"; }
  fi
done

# ---------- the table ----------
cell() {
  local v
  v=$(awk -v f="$1" -v t="$2" '$1 == f && $2 == t { v = $3 } END { print v }' "$RESULTS")
  if [[ -z $v ]]; then
    grep -q "^$1 failed " "$RESULTS" && v=fail || v=-
  fi
  echo "$v"
}
limit=$(cell limit objbench)
rows=(big-write big-read small-count small-create small-umount small-stat small-read)
declare -A label=(
  [big-write]="seq write ${BIG_MIB} MiB+fsync, MiB/s"
  [big-read]="seq read (cold), MiB/s"
  [small-count]="4 KiB files used"
  [small-create]="create, files/s"
  [small-umount]="umount after create, s"
  [small-stat]="stat (cold), files/s"
  [small-read]="read (cold), files/s"
)
declare -A head=([mfs-s3]="mirrorfs/S3" [s3fs]="s3fs" [rclone]="rclone" [mfs-shm]="mirrorfs/shm" [bindfs]="bindfs/shm")
printf '\n| %-40s' "test"
for fs in "${FSES[@]}"; do printf ' | %12s' "${head[$fs]}"; done
printf ' |\n|%s' "$(printf -- '-%.0s' $(seq 1 42))"
for fs in "${FSES[@]}"; do printf '|%s' "$(printf -- '-%.0s' $(seq 1 14))"; done
printf '|\n'
for r in "${rows[@]}"; do
  printf '| %-40s' "${label[$r]}"
  for fs in "${FSES[@]}"; do printf ' | %12s' "$(cell "$fs" "$r")"; done
  printf ' |\n'
done
printf '| %-40s' "limit: objbench 4 MiB PUT/GET p16 MiB/s"
for fs in "${FSES[@]}"; do
  case $fs in mfs-s3|s3fs|rclone) v=$limit ;; *) v=- ;; esac
  printf ' | %12s' "$v"
done
printf ' |\n\n'
echo "big: ${BIG_MIB} MiB of random data (dd bs=1M conv=fsync); small: ${SMALL_BYTES}-byte files, s3fs/rclone capped at ${REMOTE_SMALL_MAX}."
echo "Every read/stat row runs on a fresh mount after drop_caches. Swift, clients and FUSE daemons share $(nproc) cores."
