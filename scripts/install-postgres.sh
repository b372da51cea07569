#!/usr/bin/env bash
# Make sure this machine can run the throwaway PostgreSQL server used by the
# tests (tests/servers/postgres.py): server binaries, and a non-root account to
# run them as, since PostgreSQL refuses to run as root.
#
# Safe to run repeatedly: Debian's postgresql package is installed only when no
# initdb is found on PATH or in /usr/lib/postgresql/*/bin, and the gridbot-test
# account is created only when neither it nor a postgres account exists.
set -euo pipefail

fallback_account="gridbot-test"

say() { echo "install-postgres: $*"; }
die() {
    echo "install-postgres: $*" >&2
    exit 1
}

# Prints the initdb the test harness will use: PATH first, else the newest
# /usr/lib/postgresql/<version>/bin (sort -V so that 16 beats 9.6).
find_initdb() {
    local candidate
    if candidate="$(command -v initdb)"; then
        echo "$candidate"
        return 0
    fi
    while IFS= read -r candidate; do
        if [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -rV)
    return 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

if initdb="$(find_initdb)"; then
    say "found $initdb, nothing to install"
else
    is_root || die "no initdb found and not root: run as root to apt-get install postgresql"
    command -v apt-get >/dev/null || die "no initdb found and no apt-get: install PostgreSQL server binaries by hand"
    say "no initdb found: installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends postgresql
    initdb="$(find_initdb)" || die "postgresql installed but still no initdb in PATH or /usr/lib/postgresql/*/bin"
    say "installed $initdb"
fi
say "$("$(dirname "$(readlink -f "$initdb")")/postgres" --version)"

# Only root needs another account: anyone else runs the server as themselves.
if ! is_root; then
    say "not root: the test server will run as $(id -un)"
elif id -u postgres >/dev/null 2>&1; then
    say "the test server will run as the existing 'postgres' account"
elif id -u "$fallback_account" >/dev/null 2>&1; then
    say "the test server will run as the existing '$fallback_account' account"
else
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$fallback_account"
    say "created system account '$fallback_account'; the test server will run as it"
fi
