#!/usr/bin/env bash
# One-machine MirrorFS: builds (Release), runs a three-member metaserver cluster on loopback (deploy/cluster.sh), formats
# volume myfs on a local file store and mounts it at ./mnt. Rerunning reuses what is already running.
# `bash deploy/quickstart.sh stop` unmounts and stops it all.
# Installs fuse3 first (deploy/install-deps.sh) when it is missing and this runs as root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
STATE=$ROOT/.mirrorfs
CLUSTER=$STATE/cluster
BASEPORT=9400
MEMBERS=127.0.0.1:9401,127.0.0.1:9402,127.0.0.1:9403
VOLUME=myfs
URL="mirrorfs://$MEMBERS/$VOLUME"
TOKEN_FILE=$CLUSTER/token
LEGACY_PID_FILE=$STATE/meta.pid # the single metaserver earlier quick starts ran
MNT=$ROOT/mnt
META_BIN=$ROOT/src/MetaServer/bin/Release/net10.0/mirrorfs-meta
CLI_BIN=$ROOT/src/Client/bin/Release/net10.0/mirrorfs

say() { printf 'quickstart: %s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

mounted() {
  # mountinfo escapes spaces as \040; the quick start's path has none in the usual case.
  awk -v m="$MNT" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

stop() {
  if mounted; then
    say "unmounting $MNT"
    if [[ -x $CLI_BIN ]]; then "$CLI_BIN" umount "$MNT" || "$CLI_BIN" umount --lazy "$MNT"; else fusermount3 -uz "$MNT"; fi
  fi
  if [[ -d $CLUSTER ]]; then
    bash deploy/cluster.sh stop "$CLUSTER"
  fi
  if [[ -f $LEGACY_PID_FILE ]] && kill -0 "$(cat "$LEGACY_PID_FILE")" 2>/dev/null; then
    say "stopping the single metaserver of an earlier quick start"
    kill "$(cat "$LEGACY_PID_FILE")"
  fi
  rm -f "$LEGACY_PID_FILE"
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

mkdir -p "$STATE/blocks" "$MNT"

if [[ -f $LEGACY_PID_FILE ]] && kill -0 "$(cat "$LEGACY_PID_FILE")" 2>/dev/null; then
  die "the single metaserver of an earlier quick start still runs: 'bash deploy/quickstart.sh stop' first"
fi
say "starting a three-member metaserver cluster on $MEMBERS (deploy/cluster.sh, logs in $CLUSTER)"
MIRRORFS_META=$META_BIN bash deploy/cluster.sh start "$CLUSTER" "$BASEPORT" >/dev/null \
  || die "the metaserver cluster did not start; see $CLUSTER/n*.log"

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
  cluster:   $META_BIN cluster status --meta $MEMBERS --token-file $TOKEN_FILE
  file info: $CLI_BIN info mnt/hello.txt --token-file $TOKEN_FILE
  benchmark: $CLI_BIN bench $MNT --big-file-size 256M --small-files 500
  logs:      $CLUSTER/n1.log n2.log n3.log
  stop:      bash deploy/quickstart.sh stop
EOF
