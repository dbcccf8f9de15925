#!/usr/bin/python3
"""Fails when an include under server/ runs back up a floor (docs/ARCHITECTURE.md, "Folder map
and dependencies"): each folder may include its own headers and those of the folders below it,
and only zygote/ and the master may include worker/ (LibTorch's side), but for front/, which may
include the worker's LibTorch-free headers (kiln_worker_call: it counts text's tokens). Usage:
check_include_floors.py SOURCE_DIR"""
import pathlib
import re
import sys

# What each folder of server/ may include from server/ ("" is server/ itself: the master).
ALLOWED = {
    "codec": {"codec"},
    "supervisor": {"supervisor"},
    "zygote": {"zygote"},
    "metrics": {"metrics", "supervisor"},
    "front": {"front", "codec", "supervisor", "metrics"},
    "": {"", "codec", "supervisor", "zygote", "metrics", "front"},
}
MAY_INCLUDE_WORKER = {"zygote", ""}
# kiln_worker_call's headers (worker/CMakeLists.txt): no LibTorch behind them.
WORKER_CALL_HEADERS = {"call_inputs", "sentencepiece_shim", "shape_guard", "text_batch", "tokenizer"}
MAY_INCLUDE_WORKER_CALL = {"front"}
INCLUDE = re.compile(r'#include "(server|worker)/(?:(\w+)/)?(\w+)\.h"')


def main() -> int:
    server = pathlib.Path(sys.argv[1]) / "server"
    bad = []
    for path in sorted(server.rglob("*")):
        if path.suffix not in (".h", ".cc"):
            continue
        relative = path.relative_to(server)
        folder = relative.parts[0] if len(relative.parts) > 1 else ""
        if folder not in ALLOWED:
            bad.append(f"server/{relative}: a folder this check does not know; add it")
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = INCLUDE.match(line)
            if not match:
                continue
            top, sub, name = match.group(1), match.group(2) or "", match.group(3)
            worker_call = name in WORKER_CALL_HEADERS and folder in MAY_INCLUDE_WORKER_CALL
            if top == "worker" and folder not in MAY_INCLUDE_WORKER and not worker_call:
                bad.append(f"server/{relative}:{number}: {line} (worker/ is LibTorch's side)")
            elif top == "server" and sub not in ALLOWED[folder]:
                bad.append(f"server/{relative}:{number}: {line} (runs back up a floor)")
    for line in bad:
        print(line)
    print(f"{len(bad)} include(s) against the floors")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
