"""The table `make bench` ends with: every benchmark's ratio against its target, met or missed; and the
``--smoke`` option every benchmark shares (:func:`parse_benchmark_args`).

    python benchmarks/summary.py logs/bench/last_lines.jsonl     # one benchmark's last JSON line per line

A target is one or more comma-separated clauses ``[key] <op> <number>`` (``<= 1.10``,
``ratio >= 20, overhead <= 0.05``); a clause without a key is about ``ratio``. The target is met
when every clause holds for the benchmark's JSON line. A line with ``"smoke": true`` (a script's ``--smoke``
run: tiny sizes) is not judged.
"""

from __future__ import annotations

import argparse
import json
import operator
import re
import sys
from pathlib import Path

OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
CLAUSE = re.compile(r"^\s*(?:(?P<key>[A-Za-z_]\w*)\s+)?(?P<op><=|>=|<|>)\s*(?P<number>[-+0-9.eE]+)\s*$")


def parse_benchmark_args(parser: argparse.ArgumentParser, smoke: dict, sizes: dict | None = None) -> argparse.Namespace:
    """``parser.parse_args()`` plus ``--smoke``: then the defaults become ``smoke``'s (values given on the command
    line still win), a check that the script works which measures nothing. ``sizes``: defaults without a flag."""
    parser.add_argument("--smoke", action="store_true", help=f"a check that the script works, measuring nothing: "
                        f"the defaults become {smoke} (values given here still win)")
    parser.set_defaults(**(sizes or {}))
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**smoke)
        args = parser.parse_args()
        print("smoke run: tiny sizes, checks that the script works, measures nothing")
    return args


def verdict(result: dict) -> str:
    """``met``, ``missed``, or why it cannot be judged."""
    if result.get("smoke"):
        return "smoke run (not judged)"
    for clause in str(result.get("target", "")).split(","):
        parsed = CLAUSE.match(clause)
        if parsed is None:
            return f"cannot parse target clause {clause.strip()!r}"
        key = parsed["key"] or "ratio"
        if not isinstance(result.get(key), int | float):
            return f"no number {key!r} in the JSON line"
        if not OPERATORS[parsed["op"]](result[key], float(parsed["number"])):
            return "missed"
    return "met"


def summary_table(results: list[dict]) -> str:
    lines = ["| benchmark | ratio | target | verdict | threads |", "|---|---|---|---|---|"]
    for result in results:
        cells = (result.get("benchmark", "?"), result.get("ratio", "?"), result.get("target", "?"), verdict(result),
                 result.get("threads", "?"))
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def main(path: str) -> int:
    results = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:
            results.append({"benchmark": f"line {number} is not a JSON object: {line[:60]!r}"})
    print(summary_table(results))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a file of JSON lines: each benchmark's last stdout line")
    sys.exit(main(parser.parse_args().path))
