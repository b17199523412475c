#!/usr/bin/env bash
# Runs the Raft benchmark: installs etcd 3.4 (Debian etcd-server) for the baseline if absent, builds, runs.
#   bench/RaftBench/run.sh [--seconds 10] [--callers 1,64] [--rounds 3] [--only meta|etcd]
#   bench/RaftBench/run.sh --failover [--kills 5]
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v etcd >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    # The package's service does not start in containers without systemd; the bench starts its own members.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null ||
      echo "raftbench: could not install etcd-server; the etcd baseline will not run" >&2
  else
    echo "raftbench: etcd is not installed (as root: apt-get install etcd-server); the etcd baseline will not run" >&2
  fi
fi
if ! out=$(dotnet build bench/RaftBench -c Release -v q -nologo 2>&1); then
  echo "$out" >&2
  exit 1
fi
exec dotnet bench/RaftBench/bin/Release/net10.0/mirrorfs-raftbench.dll "$@"
