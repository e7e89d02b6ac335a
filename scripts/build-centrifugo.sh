#!/usr/bin/env bash
# Builds the reference Centrifugo server (tests and benchmarks only) into $1, once.
set -euo pipefail
dest="${1:?destination dir}"
version="v6.9.1"
bin="$dest/centrifugo"
if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q "${version#v}"; then
  exit 0
fi
mkdir -p "$dest"
echo "building centrifugo $version (cached in $dest)"
GOBIN="$dest" GOFLAGS=-mod=mod go install "github.com/centrifugal/centrifugo/v6@$version"
