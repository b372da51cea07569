#!/usr/bin/env bash
# Install a real Synapse homeserver into its own virtualenv for integration tests.
#
# The venv is kept apart from the bot's environment so Synapse's pinned
# dependencies never clash with ours. Safe to run repeatedly: it only creates
# the venv and installs Synapse when they are missing. Needs only PyPI.
#
#   GRIDBOT_SYNAPSE_VENV  venv location (default: ~/.cache/gridbot/synapse-venv)
#   PYTHON                interpreter used to create the venv (default: python3)
set -euo pipefail

venv="${GRIDBOT_SYNAPSE_VENV:-$HOME/.cache/gridbot/synapse-venv}"
python="${PYTHON:-python3}"
pip_quiet=(--quiet --disable-pip-version-check)

# Prints Synapse's version if the venv can import the homeserver.
installed_version() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c \
        'import synapse, synapse.app.homeserver; print(synapse.__version__)' 2>/dev/null
}

if version="$(installed_version)"; then
    echo "install-synapse: matrix-synapse $version already installed in $venv"
    exit 0
fi

# A half-created venv (interrupted run, missing ensurepip) is rebuilt, but never
# delete a non-empty directory that is not a venv (a mistyped variable).
if [ ! -x "$venv/bin/pip" ]; then
    if [ -n "$(ls -A "$venv" 2>/dev/null)" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
        echo "install-synapse: $venv exists and is not a virtualenv; refusing to touch it" >&2
        exit 1
    fi
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    if ! "$python" -m venv "$venv" 2>/dev/null; then
        # Debian's python3 lacks ensurepip without python3-venv; if this python
        # has pip, seed the venv's pip from PyPI with it instead.
        rm -rf "$venv"
        if ! { "$python" -m venv --without-pip "$venv" \
            && "$python" -m pip --python "$venv/bin/python" install "${pip_quiet[@]}" pip; }; then
            echo "install-synapse: cannot create a venv with pip using $python" \
                "(on Debian: apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi

# Pinned so that CI runs against the homeserver the tests were written for.
"$venv/bin/python" -m pip install "${pip_quiet[@]}" "matrix-synapse==${GRIDBOT_SYNAPSE_VERSION:-1.163.2}"

if ! version="$(installed_version)"; then
    echo "install-synapse: matrix-synapse installed but cannot import synapse.app.homeserver" >&2
    exit 1
fi
echo "install-synapse: installed matrix-synapse $version into $venv"
