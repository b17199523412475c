#!/usr/bin/env bash
# A three-member mirrorfs-meta cluster on loopback, for trying things out and for tests.
#   bash deploy/cluster.sh start DIR [BASEPORT]   members 1-3 on 127.0.0.1:BASEPORT+1..+3 (default 9400 -> 9401-9403),
#                                                 data in DIR/nN, logs DIR/nN.log, pids DIR/nN.pid, token DIR/token;
#                                                 returns once a leader serves (exit 1 if none within 30 s)
#   bash deploy/cluster.sh stop DIR               stops them (SIGTERM, then SIGKILL after 5 s); data stays in DIR
# The binary is $MIRRORFS_META, else src/MetaServer/bin/Release/net10.0/mirrorfs-meta (built when missing).
# $MIRRORFS_META_ARGS (words split on spaces) is added to every member's `serve`, e.g. the mirror-mode options.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
META_BIN=${MIRRORFS_META:-$ROOT/src/MetaServer/bin/Release/net10.0/mirrorfs-meta}
NODES=(1 2 3)
START_WAIT_S=30
STOP_WAIT_S=5
read -ra EXTRA_ARGS <<<"${MIRRORFS_META_ARGS:-}"

say() { printf 'cluster: %s\n' "$*"; }
die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }
usage() { die "usage: bash deploy/cluster.sh start DIR [BASEPORT] | stop DIR"; }

running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  local dir=$1 base=$2
  [[ $base =~ ^[0-9]+$ ]] && ((base + ${#NODES[@]} < 65536)) || die "BASEPORT '$base' is not a port number below $((65536 - ${#NODES[@]}))"
  if [[ ! -x $META_BIN ]]; then
    [[ -z ${MIRRORFS_META:-} ]] || die "MIRRORFS_META=$META_BIN is not an executable"
    say "building mirrorfs-meta (Release)"
    dotnet build "$ROOT/src/MetaServer" -c Release -nologo -v quiet >/dev/null \
      || die "building src/MetaServer failed: run 'dotnet build src/MetaServer -c Release' to see why"
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ ! -s $dir/token ]]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/token")
  fi
  local peers="" meta="" i
  for i in "${NODES[@]}"; do
    peers+="${peers:+,}$i=127.0.0.1:$((base + i))"
    meta+="${meta:+,}127.0.0.1:$((base + i))"
  done
  echo "$meta" >"$dir/members"
  for i in "${NODES[@]}"; do
    if running "$dir/n$i.pid"; then
      say "member $i already running (pid $(cat "$dir/n$i.pid"))"
      continue
    fi
    nohup "$META_BIN" serve --id "$i" --data "$dir/n$i" --peers "$peers" --token-file "$dir/token" "${EXTRA_ARGS[@]}" \
      >>"$dir/n$i.log" 2>&1 </dev/null &
    echo $! >"$dir/n$i.pid"
  done
  local t out
  for ((t = 0; t < START_WAIT_S * 4; t++)); do
    for i in "${NODES[@]}"; do
      running "$dir/n$i.pid" || die "member $i exited; see the end of $dir/n$i.log"
    done
    if out=$("$META_BIN" cluster status --meta "$meta" --token-file "$dir/token" 2>/dev/null); then
      say "leader serves; members $meta (token: $dir/token, logs: $dir/n*.log)"
      printf '%s\n' "$out"
      return 0
    fi
    sleep 0.25
  done
  "$META_BIN" cluster status --meta "$meta" --token-file "$dir/token" || true
  die "no leader within $START_WAIT_S s; see $dir/n*.log (the members keep running: 'bash deploy/cluster.sh stop $dir')"
}

stop() {
  local dir=$1 i pid t
  [[ -d $dir ]] || die "no cluster directory $dir"
  for i in "${NODES[@]}"; do
    if running "$dir/n$i.pid"; then
      pid=$(cat "$dir/n$i.pid")
      say "stopping member $i (pid $pid)"
      kill "$pid"
    fi
  done
  for i in "${NODES[@]}"; do
    [[ -f $dir/n$i.pid ]] || continue
    pid=$(cat "$dir/n$i.pid")
    for ((t = 0; t < STOP_WAIT_S * 10; t++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "member $i did not stop within $STOP_WAIT_S s; killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/n$i.pid"
  done
  say "stopped (data kept in $dir)"
}

case ${1:-} in
  start) [[ $# -ge 2 && $# -le 3 ]] || usage; start "$2" "${3:-9400}" ;;
  stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
  *) usage ;;
esac
