#!/usr/bin/env bash
# One-machine MirrorFS: builds (Release), runs a metaserver, formats volume myfs on a local file store and mounts it
# at ./mnt. Rerunning reuses what is already running. `bash deploy/quickstart.sh stop` unmounts and stops it all.
# Installs fuse3 first (deploy/install-deps.sh) when it is missing and this runs as root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
STATE=$ROOT/.mirrorfs
LISTEN=127.0.0.1:9400
VOLUME=myfs
URL="mirrorfs://$LISTEN/$VOLUME"
TOKEN_FILE=$STATE/meta/token
PID_FILE=$STATE/meta.pid
LOG=$STATE/meta.log
MNT=$ROOT/mnt
META_BIN=$ROOT/src/MetaServer/bin/Release/net10.0/mirrorfs-meta
CLI_BIN=$ROOT/src/Client/bin/Release/net10.0/mirrorfs
START_WAIT_S=30

say() { printf 'quickstart: %s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

meta_running() {
  [[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

mounted() {
  # mountinfo escapes spaces as \040; the quick start's path has none in the usual case.
  awk -v m="$MNT" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

stop() {
  if mounted; then
    say "unmounting $MNT"
    if [[ -x $CLI_BIN ]]; then "$CLI_BIN" umount "$MNT" || "$CLI_BIN" umount --lazy "$MNT"; else fusermount3 -uz "$MNT"; fi
  fi
  if meta_running; then
    local pid
    pid=$(cat "$PID_FILE")
    say "stopping metaserver (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { say "metaserver did not stop within 5 s; killing it"; kill -9 "$pid"; }
  fi
  rm -f "$PID_FILE"
  say "stopped (data kept in $STATE; remove it to start afresh)"
}

if [[ ${1:-} == stop ]]; then
  stop
  exit 0
elif [[ $# -gt 0 ]]; then
  die "unknown argument '$1': use 'bash deploy/quickstart.sh' to start or 'bash deploy/quickstart.sh stop'"
fi

command -v dotnet >/dev/null || die "dotnet is not installed: install the .NET 10 SDK first"
if ! command -v fusermount3 >/dev/null; then
  [[ $(id -u) == 0 ]] || die "fusermount3 is missing: run 'sudo bash deploy/install-deps.sh' first"
  say "installing fuse3 and the test dependencies (deploy/install-deps.sh)"
  bash deploy/install-deps.sh
fi

say "building (Release)"
dotnet build src/MetaServer -c Release -nologo -v quiet >/dev/null || die "building src/MetaServer failed: run 'dotnet build src/MetaServer -c Release' to see why"
dotnet build src/Client -c Release -nologo -v quiet >/dev/null || die "building src/Client failed: run 'dotnet build src/Client -c Release' to see why"

mkdir -p "$STATE/meta" "$STATE/blocks" "$MNT"

if meta_running; then
  say "metaserver already running (pid $(cat "$PID_FILE"))"
else
  say "starting metaserver on $LISTEN (log: $LOG)"
  nohup "$META_BIN" serve --data "$STATE/meta" --listen "$LISTEN" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
fi

# Ready means: the token exists and the port accepts connections.
for ((i = 0; i < START_WAIT_S * 10; i++)); do
  meta_running || die "metaserver exited; see the end of $LOG"
  if [[ -s $TOKEN_FILE ]] && (exec 3<>"/dev/tcp/${LISTEN%:*}/${LISTEN#*:}") 2>/dev/null; then break; fi
  sleep 0.1
done
(exec 3<>"/dev/tcp/${LISTEN%:*}/${LISTEN#*:}") 2>/dev/null || die "metaserver did not listen on $LISTEN within $START_WAIT_S s; see $LOG"

if "$CLI_BIN" status "$URL" --token-file "$TOKEN_FILE" >/dev/null 2>&1; then
  say "volume $VOLUME already formatted"
else
  say "formatting volume $VOLUME on file://$STATE/blocks"
  "$CLI_BIN" format "$URL" "$VOLUME" --storage "file://$STATE/blocks" --token-file "$TOKEN_FILE"
fi

if mounted; then
  say "$MNT already mounted"
else
  say "mounting $VOLUME at $MNT"
  "$CLI_BIN" mount "$URL" "$MNT" --background --token-file "$TOKEN_FILE" \
    || die "mounting failed (see above); the metaserver keeps running: 'bash deploy/quickstart.sh stop' stops it"
fi

cat <<EOF

MirrorFS is running.
  files:     $MNT                  (try: echo hello > mnt/hello.txt; cat mnt/hello.txt)
  status:    $CLI_BIN status $URL --token-file $TOKEN_FILE
  file info: $CLI_BIN info mnt/hello.txt --token-file $TOKEN_FILE
  benchmark: $CLI_BIN bench $MNT --big-file-size 256M --small-files 500
  logs:      $LOG
  stop:      bash deploy/quickstart.sh stop
EOF
