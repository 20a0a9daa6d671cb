#!/usr/bin/env bash
# `make test` from zero in a clean container of this project's kind of machine:
# Debian bookworm with Python 3.11, make, git and gcc (xai-python + a layer), the
# repository copied in (a clone of HEAD, so only committed files), pip's
# configuration, its find-links wheel folder and the host's CA bundle mounted
# read-only. Nothing else is installed by hand: `make test` installs what it
# needs. Docker-in-Docker is not set up, so the Docker tests skip saying why.
#   deploy/docker/cleanroom.sh [LOG]          (after `make image`, which makes xai-python)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
log=${1:-/tmp/cleanroom.log}
name=xai-cleanroom-$$
work=$(mktemp -d /tmp/cleanroom.XXXXXX)
trap 'docker rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

printf 'FROM xai-python:3.11-bookworm\nRUN apt-get update && apt-get install -y --no-install-recommends make git gcc python3-dev && rm -rf /var/lib/apt/lists/*\n' \
    | DOCKER_BUILDKIT=1 /usr/bin/docker build -q -t xai-machine:bookworm - >/dev/null
git clone -q "$root" "$work/repo"
wheels=$(python3 -m pip config list | sed -n "s/.*find-links='\(.*\)'/\1/p" | head -n 1)
docker create --name "$name" --shm-size 1g \
    -v "${wheels:-/opt/wheels}:${wheels:-/opt/wheels}:ro" \
    -v /etc/pip.conf:/etc/pip.conf:ro -v /etc/xdg/pip:/etc/xdg/pip:ro \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/host-ca.crt:ro \
    -e PIP_FIND_LINKS="${wheels:-/opt/wheels}" -e PIP_CERT=/etc/host-ca.crt -e PIP_DEFAULT_TIMEOUT=180 -e CI=true \
    -w /work/repo xai-machine:bookworm \
    bash -c 'start=$(date +%s); make test; rc=$?; echo "make test exit $rc after $(( $(date +%s) - start )) s"; exit $rc' >/dev/null
docker cp "$work/repo/." "$name:/work/repo"
docker start -a "$name" >"$log" 2>&1
