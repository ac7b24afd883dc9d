#!/usr/bin/env bash
# Make sure the Debian packages a make target needs are installed:
#   scripts/prerequisites.sh postgresql chromium chromium-driver redis-server faketime
# Missing ones are installed with apt-get when running as root on a machine with apt; otherwise
# this stops at once with one line naming the missing packages and the command that installs them.
set -euo pipefail

installed() {
  case "$1" in
    postgresql) compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null ;;
    chromium) command -v chromium >/dev/null 2>&1 ;;
    chromium-driver) command -v chromedriver >/dev/null 2>&1 ;;
    redis-server) command -v redis-server >/dev/null 2>&1 ;;
    faketime) command -v faketime >/dev/null 2>&1 ;;
    *) echo "prerequisites: unknown package '$1'" >&2; exit 2 ;;
  esac
}

missing=()
for package in "$@"; do
  installed "$package" || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

install_command="apt-get update && apt-get install -y ${missing[*]}"
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing Debian packages: ${missing[*]} - install them with: sudo sh -c '$install_command'" >&2
  exit 1
fi
echo "installing missing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >/tmp/ps-prerequisites.log 2>&1; then
  echo "could not install ${missing[*]} (log: /tmp/ps-prerequisites.log) - try: $install_command" >&2
  exit 1
fi
for package in "${missing[@]}"; do
  installed "$package" || { echo "installed $package but it is still not found" >&2; exit 1; }
done
