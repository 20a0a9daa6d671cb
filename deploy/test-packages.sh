#!/usr/bin/env bash
# What `make test` needs from Debian beyond Python: installs the missing packages
# when it can (root and apt-get, as `playwright install --with-deps` does
# elsewhere); otherwise names them. The tests that need a missing one are then
# skipped, each with the reason; the rest run either way.
#   chromium        browser tests (Playwright drives Debian's chromium)
#   nginx           the proxy in front of loopback replicas (tests/test_deploy.py)
#   docker.io       a Docker engine for the image, compose and swarm tests (tests/test_docker.py)
#   docker-compose  compose v1, where the docker CLI has no compose plugin
#   debootstrap     the local Debian base image, where no image registry is reachable
#   kubernetes-client  `kubectl kustomize`, unless a kubectl is already installed
#   npm             installs axe-core (package.json) for the page's accessibility tests
#   postgresql      a throwaway PostgreSQL server for the teaching database's tests (tests/postgres.py)
set -uo pipefail
packages=(chromium nginx docker.io docker-compose debootstrap postgresql)
command -v kubectl >/dev/null || packages+=(kubernetes-client)
# An npm already on the PATH (e.g. NodeSource's nodejs, which conflicts with Debian's npm) will do.
command -v npm >/dev/null || packages+=(npm)

missing=()
for package in "${packages[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "make test: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # An install cut short earlier leaves packages unconfigured and apt refusing.
    dpkg --configure -a >/dev/null
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        exit 0
    fi
    echo "make test: apt-get could not install ${missing[*]}; the tests that need them are skipped"
else
    echo "make test: missing Debian packages: ${missing[*]} (not root or no apt-get:" \
         "sudo apt-get install ${missing[*]}); the tests that need them are skipped"
fi
exit 0
