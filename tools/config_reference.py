#!/usr/bin/env python
"""
Writes docs/config_reference.md from d2_sampling/config.py: every key d2_sampling adds, its
default and the comment above it. `--check` exits 1 if the committed page is out of date.
"""

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "d2_sampling" / "config.py"
TARGET = REPO / "docs" / "config_reference.md"
_ASSIGN = re.compile(r"^\s*cfg\.([A-Z0-9_.]+)\s*=\s*(.+?)\s*$")
_FUNC = re.compile(r"^def (add_\w+_config)\(cfg\):")


def render() -> str:
    out = [
        "# Config reference",
        "",
        "Every yacs key that `add_d2_sampling_config(cfg)` adds (generated from "
        "`d2_sampling/config.py` by `tools/config_reference.py`; do not edit by hand). "
        "LazyConfig configs set the same values as constructor arguments "
        "(`MODEL.ATSS.TOPK` <-> `topk`).",
        "",
    ]
    comment, section = [], None
    for line in SOURCE.read_text().splitlines():
        m = _FUNC.match(line)
        if m:
            section = m.group(1)
            out += ["", f"## `{section}`", "", "| key | default | meaning |", "|---|---|---|"]
            comment = []
            continue
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        m = _ASSIGN.match(line)
        if m and section:
            key, value = m.groups()
            if value.startswith("CN("):
                comment = []
                continue
            text = " ".join(comment).replace("|", "\\|")
            out.append(f"| `{key}` | `{value}` | {text} |")
        comment = []
    return "\n".join(out).replace("\n\n\n", "\n\n") + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the page is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.is_file() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python tools/config_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
