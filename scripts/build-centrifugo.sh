#!/usr/bin/env bash
# Builds the reference Centrifugo server (tests and benchmarks only) into $1, once.
set -euo pipefail
dest="${1:?destination dir}"
version="v6.9.1"
bin="$dest/centrifugo"
# `go install` builds report version 0.0.0, so read the module version from the build info instead.
if [ -x "$bin" ] && go version -m "$bin" 2>/dev/null | grep -Eq "^\s+mod\s+github.com/centrifugal/centrifugo/v6\s+$version\b"; then
  exit 0
fi
mkdir -p "$dest"
echo "building centrifugo $version (cached in $dest)"
GOBIN="$dest" GOFLAGS=-mod=mod go install "github.com/centrifugal/centrifugo/v6@$version"
