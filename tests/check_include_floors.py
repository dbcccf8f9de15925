#!/usr/bin/python3
"""Fails when an include under server/ runs back up a floor (docs/ARCHITECTURE.md, "Folder map
and dependencies"): each folder may include its own headers and those of the folders below it,
and only zygote/ and the master may include worker/ (LibTorch's side). Usage:
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
INCLUDE = re.compile(r'#include "(server|worker)/(?:(\w+)/)?\w+\.h"')


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
            top, sub = match.group(1), match.group(2) or ""
            if top == "worker" and folder not in MAY_INCLUDE_WORKER:
                bad.append(f"server/{relative}:{number}: {line} (worker/ is LibTorch's side)")
            elif top == "server" and sub not in ALLOWED[folder]:
                bad.append(f"server/{relative}:{number}: {line} (runs back up a floor)")
    for line in bad:
        print(line)
    print(f"{len(bad)} include(s) against the floors")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
