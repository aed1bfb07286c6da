#!/usr/bin/env bash
# Host prerequisites for cpython-repro, idempotent and quick when all is present:
# Debian packages (git, xz-utils, diffoscope, mmdebstrap for the offline base, docker.io if no
# Docker at all) and a running Docker daemon. Called by `make setup`.
set -euo pipefail

need=()
command -v git >/dev/null || need+=(git)
command -v xz >/dev/null || need+=(xz-utils)
# mount and gpg are only recommended by mmdebstrap, but its root mode and key checks use them.
command -v mmdebstrap >/dev/null || need+=(mmdebstrap mount gpg arch-test)
command -v docker >/dev/null || need+=(docker.io)
# diffoscope explains differing members; Debian's brings the libarchive and libmagic
# bindings that the PyPI diffoscope in the venv also needs.
command -v diffoscope >/dev/null || need+=(diffoscope-minimal libarchive13 libmagic1)
# `--tests`: the status page is checked in a real headless browser.
if [ "${1:-}" = "--tests" ]; then
  command -v chromium >/dev/null || need+=(chromium)
fi
[ -e /usr/share/keyrings/debian-archive-trixie-stable.gpg ] || need+=(debian-archive-keyring)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if [ ${#need[@]} -gt 0 ]; then
  echo "host-setup: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    ca-certificates "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "host-setup: no Docker daemon answers; starting dockerd"
  $SUDO sh -c 'nohup dockerd >/var/log/cpython-repro-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || {
    echo "host-setup: dockerd did not come up; see /var/log/cpython-repro-dockerd.log" >&2
    exit 3
  }
fi
