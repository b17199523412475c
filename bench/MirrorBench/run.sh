#!/usr/bin/env bash
# Runs the mirror lag benchmark (Release): bash bench/MirrorBench/run.sh [--writers 20] [--seconds 60] [--s3-primary] ...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec dotnet run -c Release --project bench/MirrorBench -- "$@"
