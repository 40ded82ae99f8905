"""Start-up imports: `python -X importtime` of the CLI and of what `agentcron serve` imports.

Run: python bench/imports.py [--runs N] [--baseline DIR]

Two statements, each in a fresh interpreter `--runs` times (bytecode cached, as for an
installed package): `import daemon.cli` (every command) and the serve path with the default
configuration, `import daemon.cli, daemon.service, api.ui.routes` (the dashboard is on by
default, the AgentScope façade off). The figure is the sum of the top-level imports'
cumulative times, median over the runs; the top packages by their own time are listed.

Baseline, in the same run: the same statements in another checkout (`--baseline`, e.g. a
worktree of the commit before a change), runs alternating with this one's so both see the
same load; the ratio is baseline / this checkout.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import subprocess
import sys
from pathlib import Path

import common

STATEMENTS = {
    "import daemon.cli": "import daemon.cli",
    "serve path": "import daemon.cli, daemon.service, api.ui.routes",
}


def importtime(tree: Path, statement: str) -> tuple[float, dict[str, float]]:
    """(seconds of the top-level imports, {top package: its modules' own seconds})."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        cwd=tree,
        env=common.environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    total, own = 0, collections.Counter[str]()
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        if not name.startswith("  "):  # one space after the bar: imported by the statement
            total += int(cumulative_us)
        own[name.strip().split(".")[0]] += int(self_us)
    return total / 1e6, {package: us / 1e6 for package, us in own.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    trees = {"this checkout": common.REPO}
    if args.baseline:
        trees["baseline"] = args.baseline.resolve()
    common.header(
        f"imports: {args.runs} runs of each statement, {', '.join(map(str, trees.values()))}"
    )
    for label, statement in STATEMENTS.items():
        totals: dict[str, list[float]] = {name: [] for name in trees}
        own: dict[str, dict[str, list[float]]] = {
            name: collections.defaultdict(list) for name in trees
        }
        for _ in range(args.runs):
            for name, tree in trees.items():  # alternating: both see the same load
                total, packages = importtime(tree, statement)
                totals[name].append(total)
                for package, seconds in packages.items():
                    own[name][package].append(seconds)
        print(f"-- {label}: `{statement}`")
        for name in trees:
            runs = ", ".join(f"{t * 1000:.0f}" for t in totals[name])
            print(f"   {name:14} median {common.ms(statistics.median(totals[name]))}  ({runs} ms)")
        if "baseline" in trees:
            ratio = statistics.median(totals["baseline"]) / statistics.median(
                totals["this checkout"]
            )
            print(f"   baseline / this checkout: {ratio:.2f}x")
        for name in trees:
            top = sorted(own[name].items(), key=lambda item: -statistics.median(item[1]))
            listed = ", ".join(f"{p} {statistics.median(s) * 1000:.0f}" for p, s in top[: args.top])
            print(f"   {name:14} own time by package (ms): {listed}")


if __name__ == "__main__":
    main()
