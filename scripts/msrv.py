#!/usr/bin/env python3
"""Checks each workspace crate's stated MSRV (`rust-version`) against the
crates it depends on: no dependency (normal or build, all the way down, as
the lockfile resolves them) may need a newer Rust than the crate says it
builds with. Clippy's incompatible_msrv lint checks our own code against
the same number (`cargo clippy` in .ci/run); this checks what it pulls in.
Prints each crate's MSRV and the newest need among its dependencies.

    python3 scripts/msrv.py
"""

import json
import subprocess
import sys


def version(v):
    return tuple(int(x) for x in (v or "0").split(".")) + (0,) * (3 - len((v or "0").split(".")))


def main():
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--locked"], text=True))
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    failed = False
    for member in meta["workspace_members"]:
        crate = packages[member]
        msrv = crate.get("rust_version")
        if not msrv:
            print(f"{crate['name']}: states no rust-version")
            failed = True
            continue
        seen, stack, worst = set(), [member], (None, "0")
        while stack:
            node = nodes[stack.pop()]
            for dep in node["deps"]:
                kinds = {k["kind"] for k in dep["dep_kinds"]}
                if not kinds & {None, "build"} or dep["pkg"] in seen:
                    continue
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
                need = packages[dep["pkg"]].get("rust_version")
                if need and version(need) > version(worst[1]):
                    worst = (packages[dep["pkg"]]["name"] + " " + packages[dep["pkg"]]["version"], need)
        ok = version(worst[1]) <= version(msrv)
        failed |= not ok
        print(f"{crate['name']}: rust-version {msrv}; newest need among {len(seen)} dependencies: "
              f"{worst[1]} ({worst[0]}){'' if ok else '  <- above the stated MSRV'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
