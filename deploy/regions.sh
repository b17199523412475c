#!/usr/bin/env bash
# Two MirrorFS regions on loopback: a primary (three metaservers, the OSS-protocol test server as its bucket, volume
# "regions" formatted there) and a mirror (three metaservers following the primary, Swift s3api as its bucket, the
# block replicator). For trying mirroring out and for tests.
#   bash deploy/regions.sh start DIR [BASEPORT]   starts everything; state, logs and pids under DIR (BASEPORT default 9600:
#                                                 primary metaservers +1..+3, mirror metaservers +11..+13, OSS server +20,
#                                                 Swift s3api +21, replicator metrics +22)
#   bash deploy/regions.sh mount DIR              mounts the volume in both regions: DIR/primary-mnt and DIR/mirror-mnt
#   bash deploy/regions.sh status DIR [ARGS...]   mirrorfs-mirror status for this pair (ARGS e.g. --json, --watch)
#   bash deploy/regions.sh stop DIR               unmounts and stops everything (SIGTERM, then SIGKILL); data stays in DIR
# Buckets: REGIONS_PRIMARY_BUCKET (oss|swift|file, default oss) and REGIONS_MIRROR_BUCKET (swift|oss|file, default
# swift) choose the stores at start. The credentials are fixed local test ones (OSS regions-ak/regions-secret, Swift
# test:tester/testing): loopback only. REGIONS_REPLICATOR_ARGS (words split on spaces) is added to `mirrorfs-mirror
# run`, e.g. "--concurrency 32".
# Binaries come from the Release builds of src/MetaServer, src/Client, src/Mirror and tests/OssTestServer (built when
# missing).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REL=bin/Release/net10.0
META_BIN=$ROOT/src/MetaServer/$REL/mirrorfs-meta
CLI_BIN=$ROOT/src/Client/$REL/mirrorfs
MIRROR_BIN=$ROOT/src/Mirror/$REL/mirrorfs-mirror
OSS_BIN=$ROOT/tests/OssTestServer/$REL/mirrorfs-oss-testserver
PY=${SWIFT_PYTHON:-/usr/bin/python3}
VOLUME=regions
OSS_AK=regions-ak
OSS_SK=regions-secret
START_WAIT_S=60
MOUNT_WAIT_S=30
STOP_WAIT_S=10

say() { printf 'regions: %s\n' "$*"; }
die() { printf 'regions: %s\n' "$*" >&2; exit 1; }
usage() { die "usage: bash deploy/regions.sh start DIR [BASEPORT] | mount DIR | status DIR [ARGS...] | stop DIR"; }

running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# True when something accepts connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mounted() { awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; }

build_missing() {
  local bin project
  for pair in "$META_BIN:src/MetaServer" "$CLI_BIN:src/Client" "$MIRROR_BIN:src/Mirror" "$OSS_BIN:tests/OssTestServer"; do
    bin=${pair%%:*}
    project=${pair#*:}
    [[ -x $bin ]] && continue
    say "building $project (Release)"
    dotnet build "$ROOT/$project" -c Release -nologo -v quiet >/dev/null \
      || die "building $project failed: run 'dotnet build $project -c Release' to see why"
    [[ -x $bin ]] || die "building $project did not produce $bin"
  done
}

# The state start writes for the other commands.
load_env() {
  local dir=$1
  [[ -f $dir/regions.env ]] || die "no regions in $dir (no $dir/regions.env): run 'bash deploy/regions.sh start $dir' first"
  # shellcheck disable=SC1091
  source "$dir/regions.env"
}

# Bucket URI of store KIND for bucket NAME.
bucket_uri() {
  local kind=$1 name=$2 dir=$3 base=$4
  case $kind in
    oss) echo "oss://$OSS_AK:$OSS_SK@$name?endpoint=http://127.0.0.1:$((base + 20))&region=cn-hangzhou" ;;
    swift) echo "s3://test%3Atester:testing@$name?endpoint=http://127.0.0.1:$((base + 21))&region=us-east-1&path-style=true" ;;
    file) mkdir -p "$dir/$name-blocks" && echo "file://$dir/$name-blocks" ;;
    *) die "bucket kind '$kind' is not oss, swift or file" ;;
  esac
}

# Creates Swift container (= S3 bucket) NAME through Swift's own API (tempauth), which needs no request signing.
swift_bucket() {
  local port=$1 name=$2
  "$PY" - "$port" "$name" <<'EOF'
import sys, time, urllib.error, urllib.request
port, name = sys.argv[1], sys.argv[2]
req = urllib.request.Request("http://127.0.0.1:%s/auth/v1.0" % port, headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"})
with urllib.request.urlopen(req, timeout=10) as r:
    url, token = r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]
# A 503 means a backend server is still starting: Swift's proxy answers it for a refused connection. Retry a few times.
for attempt in range(20):
    req = urllib.request.Request("%s/%s" % (url, name), method="PUT", headers={"X-Auth-Token": token})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            sys.exit(0 if r.status in (201, 202) else 1)
    except urllib.error.HTTPError as e:
        if e.code != 503 or attempt == 19:
            raise
        print("bucket %s: 503 from Swift, retrying" % name, file=sys.stderr)
        time.sleep(0.5)
EOF
}

# Waits until something listens on 127.0.0.1:PORT, while the process in PID_FILE lives.
wait_port() {
  local port=$1 pid_file=$2 log=$3 what=$4 t
  for ((t = 0; t < START_WAIT_S * 4; t++)); do
    running "$pid_file" || die "$what exited during start-up; see $log"
    port_busy "$port" && return 0
    sleep 0.25
  done
  die "$what did not listen on 127.0.0.1:$port within $START_WAIT_S s; see $log"
}

start() {
  local dir=$1 base=$2 pkind=${REGIONS_PRIMARY_BUCKET:-oss} mkind=${REGIONS_MIRROR_BUCKET:-swift}
  [[ $base =~ ^[0-9]+$ ]] && ((base > 0 && base + 22 < 65536)) || die "BASEPORT '$base' is not a port number below 65514"
  [[ $pkind =~ ^(oss|swift|file)$ ]] || die "REGIONS_PRIMARY_BUCKET='$pkind' is not oss, swift or file"
  [[ $mkind =~ ^(oss|swift|file)$ ]] || die "REGIONS_MIRROR_BUCKET='$mkind' is not oss, swift or file"
  command -v dotnet >/dev/null || die "dotnet is not installed: install the .NET 10 SDK first"
  if [[ $pkind == swift || $mkind == swift ]]; then
    [[ -x /usr/bin/swift-proxy-server ]] || die "Swift is not installed: run 'bash deploy/install-deps.sh' (as root)"
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local f
  for f in "$dir"/*.pid "$dir"/primary/*.pid "$dir"/mirror/*.pid "$dir"/swift/*.pid; do
    [[ -e $f ]] || continue
    running "$f" && die "regions in $dir are already running ($f): 'bash deploy/regions.sh stop $dir' first"
  done
  build_missing
  local ports=() p
  for p in 1 2 3 11 12 13 20 21 22; do ports+=($((base + p))); done
  for p in "${ports[@]}"; do
    port_busy "$p" && die "127.0.0.1:$p is in use: stop what listens there or pick another BASEPORT"
  done

  local primary_hosts="" mirror_hosts="" i
  for i in 1 2 3; do
    primary_hosts+="${primary_hosts:+,}127.0.0.1:$((base + i))"
    mirror_hosts+="${mirror_hosts:+,}127.0.0.1:$((base + 10 + i))"
  done
  local primary_url="mirrorfs://$primary_hosts/$VOLUME" mirror_url="mirrorfs://$mirror_hosts/$VOLUME"
  local primary_bucket mirror_bucket
  primary_bucket=$(bucket_uri "$pkind" primary "$dir" "$base")
  mirror_bucket=$(bucket_uri "$mkind" mirror "$dir" "$base")
  cat >"$dir/regions.env" <<EOF
BASE=$base
PRIMARY_URL='$primary_url'
MIRROR_URL='$mirror_url'
PRIMARY_BUCKET='$primary_bucket'
MIRROR_BUCKET='$mirror_bucket'
METRICS=127.0.0.1:$((base + 22))
EOF

  if [[ $pkind == oss || $mkind == oss ]]; then
    say "starting the OSS-protocol test server on 127.0.0.1:$((base + 20)) (log $dir/oss.log)"
    MIRRORFS_OSS_SECRET_KEY=$OSS_SK nohup "$OSS_BIN" --listen "127.0.0.1:$((base + 20))" --data "$dir/oss" \
      --bucket primary --bucket mirror --access-key "$OSS_AK" >>"$dir/oss.log" 2>&1 </dev/null &
    echo $! >"$dir/oss.pid"
  fi
  if [[ $pkind == swift || $mkind == swift ]]; then
    say "starting Swift s3api on 127.0.0.1:$((base + 21)) (logs $dir/swift/*.log)"
    bash "$ROOT/deploy/swift/swift-s3.sh" start "$dir/swift" "$((base + 21))" >>"$dir/swift-start.log" 2>&1 \
      || die "Swift did not come up; see $dir/swift-start.log and $dir/swift/*.log"
    for name in primary mirror; do
      swift_bucket "$((base + 21))" "$name" >>"$dir/swift-start.log" 2>&1 \
        || die "creating Swift bucket $name failed; see $dir/swift-start.log and $dir/swift/proxy.log"
    done
  fi
  if [[ -f $dir/oss.pid ]]; then
    wait_port "$((base + 20))" "$dir/oss.pid" "$dir/oss.log" "the OSS test server"
  fi

  say "starting the primary region's metaservers on $primary_hosts (logs $dir/primary/n*.log)"
  MIRRORFS_META=$META_BIN MIRRORFS_META_ARGS="" bash "$ROOT/deploy/cluster.sh" start "$dir/primary" "$base" >>"$dir/cluster-start.log" 2>&1 \
    || die "the primary metaservers did not come up; see $dir/cluster-start.log and $dir/primary/n*.log"
  if "$CLI_BIN" status "$primary_url" --token-file "$dir/primary/token" >/dev/null 2>&1; then
    say "volume $VOLUME already formatted"
  else
    say "formatting volume $VOLUME on the primary bucket ($pkind)"
    "$CLI_BIN" format "$primary_url" "$VOLUME" --storage "$primary_bucket" --token-file "$dir/primary/token" >>"$dir/format.log" 2>&1 \
      || die "formatting $VOLUME failed; see $dir/format.log"
  fi

  say "starting the mirror region's metaservers on $mirror_hosts (logs $dir/mirror/n*.log)"
  MIRRORFS_META=$META_BIN MIRRORFS_META_ARGS="--mirror-of $primary_url --mirror-storage $mirror_bucket --token-file-primary $dir/primary/token" \
    bash "$ROOT/deploy/cluster.sh" start "$dir/mirror" "$((base + 10))" >>"$dir/cluster-start.log" 2>&1 \
    || die "the mirror metaservers did not come up; see $dir/cluster-start.log and $dir/mirror/n*.log"

  say "starting the replicator to the mirror bucket ($mkind), metrics on 127.0.0.1:$((base + 22)) (log $dir/replicator.log)"
  local repl_args
  read -ra repl_args <<<"${REGIONS_REPLICATOR_ARGS:-}"
  nohup "$MIRROR_BIN" run --primary "$primary_url" --to "$mirror_bucket" --state-dir "$dir/replicator" \
    --metrics "127.0.0.1:$((base + 22))" --checkpoint-every 1s --token-file "$dir/primary/token" "${repl_args[@]}" \
    >>"$dir/replicator.log" 2>&1 </dev/null &
  echo $! >"$dir/replicator.pid"
  wait_port "$((base + 22))" "$dir/replicator.pid" "$dir/replicator.log" "the replicator"

  # The mirror is up once its leader follows the primary (it answers the primary's volume).
  local out="" t i
  for ((t = 0; t < START_WAIT_S * 2; t++)); do
    for i in 1 2 3; do running "$dir/mirror/n$i.pid" || die "mirror metaserver $i exited; see $dir/mirror/n$i.log"; done
    out=$("$MIRROR_BIN" status --primary "$primary_url" --mirror "$mirror_url" --json --token-file "$dir/primary/token" \
      --mirror-token-file "$dir/mirror/token" 2>&1) || true
    [[ $out == *'"following"'* ]] && break
    sleep 0.5
  done
  [[ $out == *'"following"'* ]] || die "the mirror metaservers do not follow the primary after $START_WAIT_S s; see $dir/mirror/n*.log"

  cat <<EOF
regions: both regions are up (volume $VOLUME)
  primary:  $primary_url  (token $dir/primary/token, bucket: $pkind)
  mirror:   $mirror_url  (token $dir/mirror/token, bucket: $mkind)
  mount:    bash deploy/regions.sh mount $dir    -> $dir/primary-mnt, $dir/mirror-mnt
  status:   bash deploy/regions.sh status $dir [--json|--watch]
  stop:     bash deploy/regions.sh stop $dir
EOF
}

mount_one() {
  local dir=$1 name=$2 url=$3
  shift 3
  local mnt=$dir/$name-mnt t
  mkdir -p "$mnt"
  if mounted "$mnt"; then
    say "$mnt already mounted"
    return 0
  fi
  running "$dir/$name-mount.pid" && die "a mount process for $mnt runs (pid $(cat "$dir/$name-mount.pid")) but $mnt is not mounted; see $dir/$name-mount.log"
  nohup "$CLI_BIN" mount "$url" "$mnt" --cache-dir "$dir/$name-cache" "$@" >>"$dir/$name-mount.log" 2>&1 </dev/null &
  echo $! >"$dir/$name-mount.pid"
  for ((t = 0; t < MOUNT_WAIT_S * 10; t++)); do
    mounted "$mnt" && { say "mounted the $name region at $mnt (log $dir/$name-mount.log)"; return 0; }
    running "$dir/$name-mount.pid" || die "mounting the $name region at $mnt failed; see $dir/$name-mount.log"
    sleep 0.1
  done
  die "$mnt was not mounted within $MOUNT_WAIT_S s; see $dir/$name-mount.log"
}

mount() {
  local dir
  dir=$(cd "$1" 2>/dev/null && pwd) || die "no regions directory $1"
  load_env "$dir"
  [[ -x $CLI_BIN ]] || die "$CLI_BIN is missing: run 'bash deploy/regions.sh start $dir' (it builds it)"
  command -v fusermount3 >/dev/null || die "fusermount3 is missing: run 'bash deploy/install-deps.sh' (as root)"
  mount_one "$dir" primary "$PRIMARY_URL" --token-file "$dir/primary/token"
  mount_one "$dir" mirror "$MIRROR_URL" --token-file "$dir/mirror/token" --primary-token-file "$dir/primary/token"
}

status() {
  local dir
  dir=$(cd "$1" 2>/dev/null && pwd) || die "no regions directory $1"
  shift
  load_env "$dir"
  [[ -x $MIRROR_BIN ]] || die "$MIRROR_BIN is missing: run 'bash deploy/regions.sh start $dir' (it builds it)"
  exec "$MIRROR_BIN" status --primary "$PRIMARY_URL" --mirror "$MIRROR_URL" --replicator "$METRICS" \
    --token-file "$dir/primary/token" --mirror-token-file "$dir/mirror/token" "$@"
}

# SIGTERM to the process in PID_FILE, SIGKILL after STOP_WAIT_S.
stop_pid() {
  local pid_file=$1 what=$2 pid t
  running "$pid_file" || { rm -f "$pid_file"; return 0; }
  pid=$(cat "$pid_file")
  say "stopping $what (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for ((t = 0; t < STOP_WAIT_S * 10; t++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$what did not stop within $STOP_WAIT_S s; killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pid_file"
}

# Pids of processes naming DIR/ in their arguments, except this script (and its subshells).
stragglers() {
  local p
  for p in $(pgrep -f -- "$1/" || true); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'regions\.sh' || printf '%s ' "$p"
  done
}

stop() {
  local dir name
  dir=$(cd "$1" 2>/dev/null && pwd) || die "no regions directory $1"
  for name in mirror primary; do
    if mounted "$dir/$name-mnt"; then
      say "unmounting $dir/$name-mnt"
      fusermount3 -u "$dir/$name-mnt" 2>/dev/null || fusermount3 -uz "$dir/$name-mnt" || true
    fi
    stop_pid "$dir/$name-mount.pid" "the $name mount"
  done
  stop_pid "$dir/replicator.pid" "the replicator"
  [[ -d $dir/mirror ]] && bash "$ROOT/deploy/cluster.sh" stop "$dir/mirror" | sed 's/^cluster:/regions: mirror region:/'
  [[ -d $dir/primary ]] && bash "$ROOT/deploy/cluster.sh" stop "$dir/primary" | sed 's/^cluster:/regions: primary region:/'
  stop_pid "$dir/oss.pid" "the OSS test server"
  if [[ -d $dir/swift ]]; then
    say "stopping Swift"
    bash "$ROOT/deploy/swift/swift-s3.sh" stop "$dir/swift" || true
  fi
  # Everything started here names DIR in its arguments: anything left is a straggler.
  local left
  left=$(stragglers "$dir")
  if [[ -n $left ]]; then
    say "killing processes still running from $dir: $left"
    # shellcheck disable=SC2086
    kill -9 $left 2>/dev/null || true
    sleep 0.5
    left=$(stragglers "$dir")
    [[ -z $left ]] || die "processes still running from $dir: $left"
  fi
  say "stopped (data kept in $dir)"
}

case ${1:-} in
  start) [[ $# -ge 2 && $# -le 3 ]] || usage; start "$2" "${3:-9600}" ;;
  mount) [[ $# -eq 2 ]] || usage; mount "$2" ;;
  status) [[ $# -ge 2 ]] || usage; status "${@:2}" ;;
  stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
  *) usage ;;
esac
