#!/usr/bin/env bash
# Creates the virtual environment of one tested stack, with the project installed editable with
# its test extras. Idempotent: does nothing once the environment is complete and newer than the
# files that pin it.
#
#   scripts/setup_env.sh          # classic: .venv, Python 3.10, requirements.txt
#                                 #   (torch 2.3.1, Detectron2 0.7.2 from the sal-detectron2 wheel)
#   scripts/setup_env.sh modern   # modern: .venv-modern, Python 3.11, requirements-modern.txt
#                                 #   (current torch, NumPy 2, Detectron2 built from source)
#
# Python is looked up as: `python3.X` on PATH, then pyenv, then uv.
# modern: Detectron2's source is DETECTRON2_SRC (a git URL pip understands, a folder or a .tar.gz);
# default: ../shared/vendor/detectron2-*.tar.gz when it exists, else GitHub at the pinned commit.
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=${1:-classic}
case "$STACK" in
    classic) PYVER=3.10; VENV=${VENV:-.venv}; REQS=requirements.txt ;;
    modern) PYVER=3.11; VENV=${VENV:-.venv-modern}; REQS=requirements-modern.txt ;;
    *) echo "usage: $0 [classic|modern]" >&2; exit 2 ;;
esac
# The commit of Detectron2 the modern stack is tested with (2026-06-06).
D2_COMMIT=02b5c4e295e990042a714712c21dc79b731e8833
STAMP="$VENV/.d2_sampling_installed"

if [ -f "$STAMP" ] && [ "$STAMP" -nt "$REQS" ] && [ "$STAMP" -nt pyproject.toml ] \
        && [ "$STAMP" -nt "$0" ]; then
    exit 0
fi

is_pyver() { "$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$PYVER'.split('.'))))" >/dev/null 2>&1; }

find_python() {
    local cand
    if cand=$(command -v "python$PYVER" 2>/dev/null) && is_pyver "$cand"; then
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
        for v in $("$pyenv_bin" versions --bare 2>/dev/null | grep -E "^${PYVER//./\\.}(\\.[0-9]+)?\$" | sort -t. -k3 -n -r); do
            cand="$root/versions/$v/bin/python$PYVER"
            if is_pyver "$cand"; then echo "$cand"; return 0; fi
        done
    fi
    if command -v uv >/dev/null 2>&1; then
        cand=$(uv python find "$PYVER" 2>/dev/null || true)
        if [ -z "$cand" ]; then
            uv python install "$PYVER" >&2 && cand=$(uv python find "$PYVER" 2>/dev/null || true)
        fi
        if [ -n "$cand" ] && is_pyver "$cand"; then echo "$cand"; return 0; fi
    fi
    return 1
}

if [ ! -x "$VENV/bin/python" ] || ! is_pyver "$VENV/bin/python"; then
    if ! PY=$(find_python); then
        cat >&2 <<MSG
error: Python $PYVER not found (needed by the $STACK stack). Install one of:
  - your OS package (e.g. \`apt install python$PYVER python$PYVER-venv\`), so \`python$PYVER\` is on PATH;
  - pyenv:  \`pyenv install $PYVER\`;
  - uv:     \`uv python install $PYVER\`.
Or build Detectron2 from source for your Python (see README, "Other platforms").
MSG
        exit 1
    fi
    echo "Using Python $PYVER at $PY"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi

"$VENV/bin/python" -m pip install --upgrade "pip<25" >/dev/null
"$VENV/bin/python" -m pip install -r "$REQS"
if [ "$STACK" = modern ]; then
    src=${DETECTRON2_SRC:-}
    if [ -z "$src" ]; then
        vendored=$(ls ../shared/vendor/detectron2-*.tar.gz 2>/dev/null | head -n 1 || true)
        src=${vendored:-"git+https://github.com/facebookresearch/detectron2.git@$D2_COMMIT"}
    fi
    if [ -f "$src" ]; then  # a source archive: unpack it where pip can build it
        tmp=$(mktemp -d)
        tar -xzf "$src" -C "$tmp"
        src=$(dirname "$(ls "$tmp"/*/setup.py | head -n 1)")
    fi
    echo "Building Detectron2 from $src (compiles its ops: minutes)"
    # Detectron2's setup.py imports torch: it must build against the torch installed above.
    MAX_JOBS=${MAX_JOBS:-2} "$VENV/bin/python" -m pip install --no-build-isolation "$src"
    if [ -n "${tmp:-}" ]; then rm -rf "$tmp"; fi
fi
"$VENV/bin/python" -m pip install -e ".[test]"
touch "$STAMP"
echo "Environment ready in $VENV"
