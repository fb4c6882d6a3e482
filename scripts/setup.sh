#!/usr/bin/env bash
# Install what Corral needs: Debian packages (bubblewrap for the job sandbox; PostgreSQL and container tools for tests),
# then a virtual environment with the pinned Python dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=0; [ "${1:-}" = "--test" ] && TEST=1
PKGS=(bubblewrap slirp4netns libseccomp2 util-linux)
[ "$TEST" = 1 ] && PKGS+=(postgresql)
# Containers (the oci runtime, its tests and bench W8): OCI runtimes, registry tools, user-space NAT.
[ "$TEST" = 1 ] && PKGS+=(crun runc skopeo umoci docker-registry slirp4netns busybox-static e2fsprogs)
# SLURM and sshd (the ssh and slurm providers' tests, bench W9); iproute2 for network-namespace hosts.
[ "$TEST" = 1 ] && PKGS+=(slurm-wlm slurm-client munge openssh-server iproute2)
# The web pages' browser tests (tests/ui) drive Debian's Chromium through Playwright.
[ "$TEST" = 1 ] && PKGS+=(chromium)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ "$TEST" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v -i "warning" || true
else
  .venv/bin/python -m pip install -q -e . 2>&1 | grep -v -i "warning" || true
fi
.venv/bin/python -c "import corral" || { echo "setup: corral did not install" >&2; exit 1; }
# The stock Hail Batch client for the compatibility tests, in its own venv (.venv-hail).
if [ "$TEST" = 1 ]; then
  scripts/hail-client.sh >/dev/null || { echo "setup: the hail client did not install" >&2; exit 1; }
fi
