"""`make bench`'s closing table (benchmarks/summary.py) and the JSON line every benchmark ends with."""

import ast
import json

import pytest

from benchmarks.summary import build_parser, main, summary_table, verdict
from framework.compose import ROOT

BENCHMARKS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if p.name not in ("summary.py", "__init__.py"))
REQUIRED = {"benchmark", "ratio", "target", "baseline", "threads"}


@pytest.mark.parametrize(("result", "expected"), [
    ({"ratio": 1.07, "target": "<= 1.10"}, "met"),
    ({"ratio": 1.2, "target": "<= 1.10"}, "missed"),
    ({"ratio": 1.8, "target": ">= 1.8"}, "met"),
    ({"ratio": 25, "overhead": 0.03, "target": "ratio >= 20, overhead <= 0.05"}, "met"),
    ({"ratio": 25, "overhead": 0.07, "target": "ratio >= 20, overhead <= 0.05"}, "missed"),
    ({"ratio": 1.1, "fit_seconds": 4.3, "target": "fit_seconds <= 60, ratio <= 1.5"}, "met"),
    ({"ratio": 1.1, "target": "fast"}, "cannot parse target clause 'fast'"),
    ({"ratio": 1.1, "target": "overhead <= 0.05"}, "no number 'overhead' in the JSON line"),
    ({"ratio": 2.2, "target": "<= 0.75", "smoke": True}, "smoke run (not judged)"),
    ({"ratio": 1.39, "target": "<= 1.10", "not_judged": "the target is for batch 256"},
     "not judged: the target is for batch 256"),
    ({"ratio": 1.07, "target": "<= 1.10", "not_judged": None}, "met"),
    # a number that is none was a traceback and no table; a key without spaces was refused; true was a number
    ({"ratio": 1.0, "target": "<= 1.1.0"}, "cannot parse target clause '<= 1.1.0'"),
    ({"ratio": 1.0, "target": ">= 1e"}, "cannot parse target clause '>= 1e'"),
    ({"ratio": 2.0, "target": "ratio>=1"}, "met"),
    ({"ratio": 1.0, "target": "<= 1e-1"}, "missed"),
    ({"ratio": True, "target": "<= 2"}, "no number 'ratio' in the JSON line"),
])
def test_verdict_checks_every_clause_of_the_target(result, expected):
    assert verdict(result) == expected


def test_table_has_one_row_per_benchmark_and_names_bad_lines(tmp_path, capsys):
    lines = [json.dumps({"benchmark": "overhead", "ratio": 1.2, "target": "<= 1.10", "threads": 1}), "Traceback"]
    (tmp_path / "last_lines.jsonl").write_text("\n".join(lines) + "\n")
    assert main(str(tmp_path / "last_lines.jsonl")) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:3] == ["| benchmark | ratio | target | verdict | threads |", "|---|---|---|---|---|",
                           "| overhead | 1.2 | <= 1.10 | missed | 1 |"]
    assert printed[3] == "| line 2 | ? | ? | not judged: the line is not JSON: 'Traceback' | ? |"
    assert summary_table([]).count("\n") == 1


@pytest.mark.parametrize(("line", "expected"), [
    ("[1, 2]", "| line 1 | ? | ? | not judged: the line is JSON but not an object: '[1, 2]' | ? |"),
    ("3", "| line 1 | ? | ? | not judged: the line is JSON but not an object: '3' | ? |"),
    ("", "| line 1 | ? | ? | not judged: the line is not JSON: '' | ? |"),
    ("oops | here", "| line 1 | ? | ? | not judged: the line is not JSON: 'oops \\| here' | ? |"),
    ('{"benchmark": "x", "ratio": 2}', "| x | 2 | ? | no target in the JSON line | ? |"),
])
def test_a_line_that_is_no_result_says_why_in_its_row(line, expected, tmp_path, capsys):
    (tmp_path / "last_lines.jsonl").write_text(line + "\n")
    assert main(str(tmp_path / "last_lines.jsonl")) == 0
    assert capsys.readouterr().out.splitlines()[2] == expected


@pytest.mark.parametrize("name", ["missing.jsonl", "."])
def test_a_path_that_is_no_file_is_one_sentence_and_exit_code_2(name, tmp_path, capsys):
    assert main(str(tmp_path / name)) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"benchmarks/summary.py: cannot read '{tmp_path / name}' (")


def test_the_help_describes_the_script_in_a_whole_sentence():
    description = build_parser().description
    assert description.startswith("Print the table `make bench` ends with") and description.endswith(".")
    assert " ".join(build_parser().format_help().split()).count(description) == 1


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_every_benchmark_ends_with_a_json_line_holding_the_summary_keys(script):
    """The last json.dumps({...}) a benchmark prints is its summary line: it must hold the keys the table reads."""
    dumps = [node for node in ast.walk(ast.parse(script.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "dumps" and node.args
             and isinstance(node.args[0], ast.Dict)]
    assert dumps, f"{script.name} prints no json.dumps({{...}}) line"
    last = max(dumps, key=lambda node: node.lineno).args[0]
    keys = {key.value for key in last.keys if isinstance(key, ast.Constant)}
    assert REQUIRED <= keys, f"{script.name}: missing {sorted(REQUIRED - keys)}"
    target = next(value for key, value in zip(last.keys, last.values, strict=True)
                  if isinstance(key, ast.Constant) and key.value == "target")
    assert isinstance(target, ast.Constant | ast.JoinedStr), f"{script.name}: the target is not a string"
    # An f-string target is read with every {...} as a number: its clauses must parse all the same.
    text = target.value if isinstance(target, ast.Constant) else "".join(
        part.value if isinstance(part, ast.Constant) else "1" for part in target.values)
    fake = {"ratio": 1.0, **{c.split()[0]: 1.0 for c in text.split(",") if c.split()[0][0].isalpha()}}
    assert verdict({**fake, "target": text}) in ("met", "missed"), text


def test_bracketed_divides_the_baseline_by_the_mean_of_the_fast_runs_around_it(monkeypatch):
    """A machine that slows down while the baseline runs: the fast runs before (1 unit) and after (3 units) it
    bracket the change; the ratio is the median over rounds, and ``slow_seconds_of`` scales a partial baseline."""
    import benchmarks.summary as summary

    now = [0.0]
    monkeypatch.setattr(summary, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: now[0])}))
    fast_costs, slow_costs = iter([1, 3, 2, 2, 1, 1]), iter([20, 40, 5])

    def run(costs, result):
        now[0] += next(costs)
        return result

    timing = summary.bracketed(lambda: run(fast_costs, "fast"), lambda: run(slow_costs, "slow"), 3)
    assert [r["ratio"] for r in timing["rounds"]] == [10.0, 20.0, 5.0]
    assert timing["ratio"] == 10.0 and timing["fast_result"] == "fast" and timing["slow_result"] == "slow"
    assert summary.rounds_shown(timing) == " (rounds: 10.0, 20.0, 5.0)"
    fast_costs, slow_costs = iter([1, 1]), iter([20])
    scaled = summary.bracketed(lambda: run(fast_costs, None), lambda: run(slow_costs, 8), 1,
                               lambda result, seconds: seconds * result)
    assert scaled["ratio"] == 160.0 and summary.rounds_shown(scaled) == ""
