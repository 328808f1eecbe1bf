#!/usr/bin/env bash
# Creates .venv (Python 3.10) with the pinned stack from requirements.txt and the project
# installed editable with its test extras. Idempotent: does nothing once .venv is complete.
#
# Python 3.10 is looked up as: `python3.10` on PATH, then pyenv, then uv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
STAMP="$VENV/.d2_sampling_installed"

if [ -f "$STAMP" ] && [ "$STAMP" -nt requirements.txt ] && [ "$STAMP" -nt pyproject.toml ]; then
    exit 0
fi

is_py310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

find_python310() {
    local cand
    if cand=$(command -v python3.10 2>/dev/null) && is_py310 "$cand"; then
        echo "$cand"; return 0
    fi
    # pyenv, also when it is installed but not on PATH (non-interactive shells, CI).
    local pyenv_bin=""
    if command -v pyenv >/dev/null 2>&1; then
        pyenv_bin=$(command -v pyenv)
    elif [ -x "${PYENV_ROOT:-$HOME/.pyenv}/bin/pyenv" ]; then
        pyenv_bin="${PYENV_ROOT:-$HOME/.pyenv}/bin/pyenv"
    fi
    if [ -n "$pyenv_bin" ]; then
        local root v
        root=$("$pyenv_bin" root)
        for v in $("$pyenv_bin" versions --bare 2>/dev/null | grep -E '^3\.10(\.[0-9]+)?$' | sort -t. -k3 -n -r); do
            cand="$root/versions/$v/bin/python3.10"
            if is_py310 "$cand"; then echo "$cand"; return 0; fi
        done
    fi
    if command -v uv >/dev/null 2>&1; then
        cand=$(uv python find 3.10 2>/dev/null || true)
        if [ -z "$cand" ]; then
            uv python install 3.10 >&2 && cand=$(uv python find 3.10 2>/dev/null || true)
        fi
        if [ -n "$cand" ] && is_py310 "$cand"; then echo "$cand"; return 0; fi
    fi
    return 1
}

if [ ! -x "$VENV/bin/python" ] || ! is_py310 "$VENV/bin/python"; then
    if ! PY=$(find_python310); then
        cat >&2 <<'MSG'
error: Python 3.10 not found. The tested Detectron2 wheel (sal-detectron2==0.7.2) needs
Python 3.10. Install one of:
  - your OS package (e.g. `apt install python3.10 python3.10-venv`), so `python3.10` is on PATH;
  - pyenv:  `pyenv install 3.10`;
  - uv:     `uv python install 3.10`.
Or build Detectron2 from source for your Python (see README, "Other platforms").
MSG
        exit 1
    fi
    echo "Using Python 3.10 at $PY"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi

"$VENV/bin/python" -m pip install --upgrade "pip<25" >/dev/null
"$VENV/bin/python" -m pip install -r requirements.txt
"$VENV/bin/python" -m pip install -e ".[test]"
touch "$STAMP"
echo "Environment ready in $VENV"
