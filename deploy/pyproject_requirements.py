"""Print the requirements of pyproject.toml (core dependencies plus the named extras), one a line.

The images install these first and the package itself afterwards with `--no-deps`, so a change to
the source does not reinstall every dependency (the layer of dependencies stays cached).

    python pyproject_requirements.py pyproject.toml service worker > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """Core dependencies and the extras' own, with extras that name the project (`cmet[jobs]`) expanded."""
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    optional = project.get("optional-dependencies", {})
    out: list[str] = []

    def add(reqs: list[str]) -> None:
        for req in reqs:
            own = re.fullmatch(rf"{re.escape(project['name'])}\[([\w,\s-]+)\]", req)
            if own is not None:
                expand([e.strip() for e in own.group(1).split(",")])
            elif req not in out:
                out.append(req)

    def expand(names: list[str]) -> None:
        unknown = [e for e in names if e not in optional]
        if unknown:
            raise SystemExit(f"unknown extra(s) {', '.join(unknown)}; pyproject has {', '.join(optional)}")
        for name in names:
            add(optional[name])

    add(project.get("dependencies", []))
    expand(extras)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(requirements(Path(argv[0]), argv[1:])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
