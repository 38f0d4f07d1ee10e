"""The table `make bench` ends with: every benchmark's ratio against its target, met or missed; and the
``--smoke`` option every benchmark shares (:func:`parse_benchmark_args`), and the timing of a fast path against a
slow baseline that two of them share (:func:`bracketed`).

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
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
UNREADABLE = "_unreadable"  # a row for a line that holds no result: why (the verdict cell)
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
CLAUSE = re.compile(rf"^\s*(?:(?P<key>[A-Za-z_]\w*)\s*)?(?P<op><=|>=|<|>)\s*(?P<number>{NUMBER})\s*$")


DESCRIPTION = ("Print the table `make bench` ends with: each benchmark's ratio against its target, met or missed, "
               "from a file of the benchmarks' last JSON lines.")


def at_least(minimum: int, *also: int):
    """An argparse ``type``: a whole number >= ``minimum`` (or one of ``also``, a documented special value such as
    0); anything else is argparse's one-line error with exit code 2, before any work."""
    allowed = f"a whole number >= {minimum}" + "".join(f" or {value}" for value in also)

    def whole_number(text: str) -> int:
        digits = text.strip()
        if not (digits.isascii() and digits.isdigit()) or (int(digits) < minimum and int(digits) not in also):
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed}")
        return int(digits)

    whole_number.__name__ = f"at_least_{minimum}"
    return whole_number


positive = at_least(1)  # a count, a size: a whole number >= 1


def parse_benchmark_args(parser: argparse.ArgumentParser, smoke: dict, sizes: dict | None = None,
                         argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` plus ``--smoke``: then the defaults become ``smoke``'s (values given on the command
    line still win), a check that the script works which measures nothing. ``sizes``: defaults without a flag."""
    parser.add_argument("--smoke", action="store_true", help=f"a check that the script works, measuring nothing: "
                        f"the defaults become {smoke} (values given here still win)")
    parser.set_defaults(**(sizes or {}))
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**smoke)
        args = parser.parse_args(argv)
        print("smoke run: tiny sizes, checks that the script works, measures nothing")
    return args


def bracketed(fast: Callable[[], object], slow: Callable[[], object], repeats: int,
              slow_seconds_of: Callable[[object, float], float] = lambda result, seconds: seconds) -> dict:
    """Times a fast path against a slow baseline of minutes: each of ``repeats`` rounds runs the fast path, the
    baseline, then the fast path again, and divides the baseline's seconds by the mean of the two fast runs around
    it, so that a machine busier during the baseline than before it slows both sides. ``slow_seconds_of(result,
    seconds)``: what the baseline's run stands for (one timed in part and scaled up); its wall seconds by default.
    Returns the median ratio, the rounds' ratios and seconds, and the last results of both."""
    rounds = []
    for _ in range(repeats):
        before, fast_result = timed(fast)
        slow_seconds, slow_result = timed(slow)
        slow_seconds = slow_seconds_of(slow_result, slow_seconds)
        after, fast_result = timed(fast)
        rounds.append({"fast_seconds": (before + after) / 2, "slow_seconds": slow_seconds,
                       "ratio": slow_seconds / ((before + after) / 2)})
    return {"ratio": statistics.median(r["ratio"] for r in rounds), "rounds": rounds,
            "fast_seconds": statistics.median(r["fast_seconds"] for r in rounds),
            "slow_seconds": statistics.median(r["slow_seconds"] for r in rounds),
            "fast_result": fast_result, "slow_result": slow_result}


def rounds_shown(timing: dict) -> str:
    """`` (rounds: 7.1, 7.4, 7.9)`` after a ratio of several rounds of :func:`bracketed`; nothing after one."""
    ratios = [f"{r['ratio']:.1f}" for r in timing["rounds"]]
    return f" (rounds: {', '.join(ratios)})" if len(ratios) > 1 else ""


def timed(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def verdict(result: dict) -> str:
    """``met``, ``missed``, or why it cannot be judged."""
    if UNREADABLE in result:
        return result[UNREADABLE]
    if "failed" in result:  # the row make bench writes for a script that failed
        return f"failed ({result['failed']}; its output is above)"
    if result.get("smoke"):
        return "smoke run (not judged)"
    if result.get("not_judged"):  # a size or setting the target is not about
        return f"not judged: {result['not_judged']}"
    if "target" not in result:
        return "no target in the JSON line"
    for clause in str(result.get("target", "")).split(","):
        parsed = CLAUSE.match(clause)
        if parsed is None:
            return f"cannot parse target clause {clause.strip()!r}"
        key = parsed["key"] or "ratio"
        if not isinstance(result.get(key), int | float) or isinstance(result.get(key), bool):
            return f"no number {key!r} in the JSON line"
        if not OPERATORS[parsed["op"]](result[key], float(parsed["number"])):
            return "missed"
    return "met"


def summary_table(results: list[dict]) -> str:
    lines = ["| benchmark | ratio | target | verdict | threads |", "|---|---|---|---|---|"]
    for result in results:
        cells = (result.get("benchmark", "?"), result.get("ratio", "?"), result.get("target", "?"), verdict(result),
                 result.get("threads", "?"))
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def read_line(number: int, line: str) -> dict:
    """One line of the file as a benchmark's result, or a row that says why it is none."""
    try:
        result = json.loads(line)
    except json.JSONDecodeError:
        return {"benchmark": f"line {number}", UNREADABLE: f"not judged: the line is not JSON: {line[:60]!r}"}
    if not isinstance(result, dict):
        return {"benchmark": f"line {number}",
                UNREADABLE: f"not judged: the line is JSON but not an object: {line[:60]!r}"}
    return result


def main(path: str) -> int:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else "it is not a text file"
        print(f"benchmarks/summary.py: cannot read {path!r} ({why}); give the file of JSON lines that `make bench` "
              f"writes (logs/bench/last_lines.jsonl).", file=sys.stderr)
        return 2
    print(summary_table([read_line(number, line) for number, line in enumerate(text.splitlines(), 1)]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("path", help="a file of JSON lines: each benchmark's last stdout line")
    return parser


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args().path))
