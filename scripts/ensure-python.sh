#!/usr/bin/env bash
# Make sure `$PYTHON -m venv` works (PYTHON defaults to python3), installing Debian's
# python3 / python3-venv when missing. Idempotent; run by `make` before creating .venv, as
# root or through sudo. Fresh Debian images lack python3, or have it without ensurepip,
# which makes `python3 -m venv` fail half-way.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
PYTHON=${PYTHON:-python3}
MIN_MINOR=11 # pyproject: requires-python >= 3.11

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "ensure-python: need root (or sudo) to run: $*" >&2
    return 1
  fi
}

APT_UPDATED=0
apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "ensure-python: apt-get not found; install by hand: $*" >&2
    exit 1
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    as_root apt-get update -qq || { echo "ensure-python: apt-get update failed" >&2; exit 1; }
    APT_UPDATED=1
  fi
  if ! as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@"; then
    echo "ensure-python: apt-get failed to install: $*" >&2
    exit 1
  fi
}

if ! command -v "$PYTHON" >/dev/null; then
  apt_install python3 python3-venv
  printf '%-18s installed %s\n' python3 "$(command -v "$PYTHON" || echo '?')"
fi

if ! "$PYTHON" -c "import sys; sys.exit(sys.version_info < (3, $MIN_MINOR))"; then
  echo "ensure-python: $PYTHON is $("$PYTHON" -V 2>&1); pledgewatch needs Python >= 3.$MIN_MINOR" \
    "(set PYTHON=python3.$MIN_MINOR or newer)" >&2
  exit 1
fi

if "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  printf '%-18s found %s (%s)\n' python3-venv "$(command -v "$PYTHON")" "$("$PYTHON" -V 2>&1)"
  exit 0
fi

# Debian splits venv's pip bootstrap into python3.X-venv; python3-venv pulls the default one.
# Prefer the package for this exact interpreter (PYTHON may not be the default python3).
version=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ "$APT_UPDATED" -eq 0 ] && command -v apt-get >/dev/null; then
  as_root apt-get update -qq || { echo "ensure-python: apt-get update failed" >&2; exit 1; }
  APT_UPDATED=1
fi
if apt-cache show "python$version-venv" >/dev/null 2>&1; then
  apt_install "python$version-venv"
else
  apt_install python3-venv
fi
if ! "$PYTHON" -c 'import ensurepip, venv'; then
  echo "ensure-python: $PYTHON still cannot import ensurepip after installing python3-venv" >&2
  exit 1
fi
printf '%-18s installed %s (%s)\n' python3-venv "$(command -v "$PYTHON")" "$("$PYTHON" -V 2>&1)"
