#!/usr/bin/env bash
# Install the real servers the test suite runs against, when they are missing.
#
# Idempotent; run by `make test` on a fresh Debian/Ubuntu machine, as root or through sudo.
# Prints one line per component: "found <path>" or "installed <path>". Runs `apt-get update`
# only when something must be installed. Package maintainer scripts are stopped from
# starting services while we install (policy-rc.d exit 101): the tests start their own
# servers on random loopback ports and never use a system daemon.
#
# Adding a component (PostgreSQL, VictoriaMetrics, InfluxDB 1.x, anvil ...): write
# `find_<name>` that prints the binary path and fails when it is missing, and list it in
# COMPONENTS with its apt packages. A component that is not an apt package (anvil comes from
# npm) gets an `install_<name>` function instead of packages; it runs after the apt step.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# name|apt packages (space separated; empty when install_<name> exists)
COMPONENTS=(
  "mosquitto|mosquitto"
  "mosquitto_clients|mosquitto-clients"
  "openssl|openssl"
  "postgresql|postgresql"
  "npm|npm"
  "anvil|"
  "victoria_metrics|victoria-metrics"
  "influxdb|influxdb"
  "chromium|chromium"
)

# anvil (Foundry's Ethereum dev node) comes from npm: @foundry-rs/anvil ships the native binary
# in a per-platform package (@foundry-rs/anvil-linux-amd64, ...). It is installed into the
# checkout's .tools/ (no root needed, nothing on PATH); tests/servers.py looks there first.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ANVIL_PACKAGE="@foundry-rs/anvil@1.7.1"

first_executable() {
  local candidate
  for candidate in "$@"; do
    if [ -x "$candidate" ] && [ ! -d "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

find_mosquitto() {
  first_executable /usr/sbin/mosquitto /usr/local/sbin/mosquitto "$(command -v mosquitto || true)"
}

find_mosquitto_clients() {
  # mosquitto_passwd ships with the broker package; the tests also use the CLI clients.
  local pub
  pub=$(command -v mosquitto_pub) || return 1
  command -v mosquitto_sub >/dev/null || return 1
  command -v mosquitto_passwd >/dev/null || return 1
  echo "$pub"
}

find_openssl() {
  command -v openssl
}

find_postgresql() {
  # Debian keeps server binaries off PATH, one directory per major version.
  # shellcheck disable=SC2046
  first_executable $(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -rV) \
    "$(command -v initdb || true)"
}

find_npm() {
  command -v npm
}

find_victoria_metrics() {
  # Debian's single-node server (/usr/bin/victoria-metrics); the tests start their own on a
  # random loopback port, never the packaged service.
  first_executable /usr/bin/victoria-metrics "$(command -v victoria-metrics || true)"
}

find_influxdb() {
  # Debian's InfluxDB 1.x server (/usr/bin/influxd): the dashboards' InfluxQL runs against it.
  first_executable /usr/bin/influxd "$(command -v influxd || true)"
}

find_chromium() {
  # Debian's headless-capable browser: the read API's officer page is checked in it.
  first_executable /usr/bin/chromium "$(command -v chromium || true)"
}

find_anvil() {
  # The native binary, never the npm node wrapper (tests kill -9 the node).
  # shellcheck disable=SC2046
  first_executable \
    $(ls -d "$ROOT"/.tools/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null | sort -r) \
    $(ls -d /usr/local/lib/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null | sort -r) \
    $(ls -d /usr/lib/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null | sort -r) \
    "${HOME:-/root}/.foundry/bin/anvil"
}

install_anvil() {
  # --ignore-scripts: the package's postinstall only downloads the platform package when npm
  # skipped it; the optional dependency already carries the binary. --engine-strict=false:
  # that package declares node >= 20 and Debian 12 ships 18, but the binary never runs
  # under node (tests start it directly). Checked with npm 9.2 (Debian 12's) and npm 11.
  npm install --prefix "$ROOT/.tools" --no-save --no-audit --no-fund --ignore-scripts \
    --engine-strict=false \
    --loglevel=error "$ANVIL_PACKAGE" >&2
}

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    SUDO=(sudo)
  fi
fi

as_root() {
  if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
    echo "ensure-servers: need root (or sudo) to run: $*" >&2
    return 1
  fi
  "${SUDO[@]}" "$@"
}

POLICY=/usr/sbin/policy-rc.d
POLICY_OURS=0
allow_service_starts_again() {
  if [ "$POLICY_OURS" -eq 1 ]; then
    as_root rm -f "$POLICY" || true
  fi
}
trap allow_service_starts_again EXIT

forbid_service_starts() {
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# ensure-servers.sh: no service starts during test-server installs\nexit 101\n' |
      as_root tee "$POLICY" >/dev/null
    as_root chmod 0755 "$POLICY"
    POLICY_OURS=1
  fi
}

declare -a MISSING=()
declare -a PACKAGES=()
declare -a CUSTOM=()
for spec in "${COMPONENTS[@]}"; do
  name=${spec%%|*}
  packages=${spec#*|}
  if path=$("find_$name" 2>/dev/null); then
    printf '%-18s found %s\n' "$name" "$path"
    continue
  fi
  MISSING+=("$name")
  if [ -n "$packages" ]; then
    # shellcheck disable=SC2206
    PACKAGES+=($packages)
  else
    CUSTOM+=("$name")
  fi
done

if [ ${#MISSING[@]} -eq 0 ]; then
  exit 0
fi

if [ ${#PACKAGES[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "ensure-servers: apt-get not found; install these packages by hand: ${PACKAGES[*]}" >&2
    exit 1
  fi
  forbid_service_starts
  if ! as_root apt-get update -qq ||
    ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${PACKAGES[@]}"; then
    echo "ensure-servers: apt-get failed to install: ${PACKAGES[*]}" >&2
    exit 1
  fi
fi

for name in "${CUSTOM[@]}"; do
  if ! "install_$name"; then
    echo "ensure-servers: installing $name failed" >&2
    exit 1
  fi
done

status=0
for name in "${MISSING[@]}"; do
  if path=$("find_$name" 2>/dev/null); then
    printf '%-18s installed %s\n' "$name" "$path"
  else
    printf '%-18s MISSING after install\n' "$name" >&2
    status=1
  fi
done
if [ "$status" -ne 0 ]; then
  echo "ensure-servers: some test servers are still missing; see above" >&2
fi
exit "$status"
