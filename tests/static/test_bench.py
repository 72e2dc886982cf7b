"""The benchmark's shape, without running it: one module per benchmark with its measurement, its
rows and their details; row names unique and in a fixed order, the same in bench/results.md;
no import of the tests' helpers."""

from __future__ import annotations

import re

import pytest

from bench.__main__ import BENCHMARKS, mark_loaded, parse_args
from bench.table import document
from tests.helpers import REPO_ROOT

NAMES = [name for benchmark in BENCHMARKS for name in benchmark.ROWS]


def empty_results(benchmark):
    """The benchmark's results type with nothing measured (each module's one dataclass)."""
    kinds = [value for name, value in vars(benchmark).items() if name.endswith("Results")]
    assert len(kinds) == 1, benchmark.__name__
    return kinds[0]()


def test_each_benchmark_is_a_module_with_its_measurement_rows_and_details():
    for benchmark in BENCHMARKS:
        for attribute in ("NAME", "ROWS", "measure", "rows", "details", "describe"):
            assert hasattr(benchmark, attribute), (benchmark.__name__, attribute)
        # The module is named for what it measures, as --only names it
        assert benchmark.__name__ == "bench." + benchmark.NAME.replace("-", "_")
    assert len(set(NAMES)) == len(NAMES), NAMES
    assert all(re.fullmatch(r"[a-z][a-z0-9-]*", name) for name in NAMES), NAMES


@pytest.mark.parametrize("benchmark", BENCHMARKS, ids=lambda b: b.NAME)
def test_a_benchmark_that_measured_nothing_still_gives_its_rows_in_order(benchmark):
    results = empty_results(benchmark)
    names = [row.name for row in benchmark.rows(results)]
    assert names and [name for name in benchmark.ROWS if name in names] == names, names
    assert all(item.startswith("`") for item in benchmark.details(results))


def test_the_results_file_lists_the_rows_by_name_in_the_benchmarks_order():
    written = re.findall(
        r"^\| `([a-z0-9-]+)` \|", (REPO_ROOT / "bench/results.md").read_text(), re.M
    )
    assert written == [name for name in NAMES if name in written], written
    # Rows a benchmark leaves out when it measured nothing (the monitor's) aside, all are there
    assert len(written) >= len(NAMES) - 1, set(NAMES) - set(written)


def test_only_takes_benchmark_names_and_keeps_the_table_order():
    args = parse_args(["--only", "release", "builds"])
    assert [b.NAME for b in args.benchmarks] == ["builds", "release"]
    assert args.output.name == "results-builds-release.md"
    with pytest.raises(SystemExit):
        parse_args(["--only", "11"])


def test_a_loaded_start_marks_that_benchmark_s_rows_only():
    release, schedules = BENCHMARKS[-2], BENCHMARKS[-1]
    loaded = release.rows(empty_results(release))
    quiet = schedules.rows(empty_results(schedules))
    mark_loaded(loaded, 2.3)
    mark_loaded(quiet, 0.4)
    assert all(row.met.endswith("(load 2.3)") for row in loaded)
    assert not any("load" in row.met for row in quiet)
    text = document({"cores": "2"}, "Measured now.", loaded + quiet, ["`monitor`: x"])
    assert "| `release-image-size` |" in text and "- `monitor`: x\n" in text


def test_no_benchmark_imports_the_tests():
    for module in sorted((REPO_ROOT / "bench").glob("*.py")):
        assert not re.search(r"^\s*(from|import) tests\b", module.read_text(), re.M), module.name
