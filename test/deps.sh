#!/usr/bin/env bash
# Installs the Debian packages billing needs to build, test and demo, if any
# is missing. Safe to run again: it only calls apt-get when something is absent.
set -euo pipefail

packages=(
	postgresql-15 postgresql-client-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-plpgsql-check
	libssl-dev nlohmann-json3-dev libgtest-dev cmake g++ make bc jq gcovr
	clang-14 libclang-rt-14-dev python3
)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# The server and its headers must be the same minor version.
server=$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || true)
headers=$(dpkg-query -W -f='${Version}' postgresql-server-dev-15 2>/dev/null || true)
if [ -n "$server" ] && [ -n "$headers" ] && [ "$server" != "$headers" ]; then
	missing+=(postgresql-15 postgresql-server-dev-15 postgresql-client-15)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]}; run as root or install them with apt-get" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
