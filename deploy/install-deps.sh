#!/usr/bin/env bash
# Installs the system packages MirrorFS's tests and local deployments need (Debian 12, as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(fuse3 libfuse3-dev swift swift-proxy swift-object swift-container swift-account)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The gRPC interop tests drive our servers with the standard Node.js client.
if [[ -f tests/interop/package-lock.json && ! -d tests/interop/node_modules ]]; then
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
fi
