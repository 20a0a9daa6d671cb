#!/usr/bin/env bash
# Make a Debian bookworm base image from the Debian mirror alone, for engines that
# cannot pull from an image registry: debootstrap (minbase) into a scratch
# directory, then `docker import`. Usage: deploy/docker/debian-base.sh IMAGE [MIRROR]
# Needs root and debootstrap. The mirror defaults to the one apt uses on this host.
set -euo pipefail
image=${1:?usage: $0 IMAGE [MIRROR]}
mirror=${2:-$(grep -rhoE '(URIs:|^deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | grep -oE 'https?://[^ ]+' | head -n 1 || true)}
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d /tmp/debian-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
# minbase: dpkg, apt and the essential packages; the images built on it add their own.
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || { cat "$root.log"; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# apt inside the image uses the same mirror; no package lists are kept (as in debian:*-slim).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "$image"
