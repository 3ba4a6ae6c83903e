"""Telemetry declared once (asgdbench.engine.telemetry): a metric added in one place reaches
the run's record, the report table, summary.csv and the asv tracks.

A declaration is read when the modules that derive from it are imported, so each check
declares its metric in a fresh interpreter, before anything else is imported, exactly
as a line added to ``TELEMETRY`` and ``FIGURES`` would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from asgdbench.engine import telemetry
from asgdbench.engine.run_result import RunResult
from asgdbench.engine.telemetry import (
    COMPUTED,
    FIGURES,
    TELEMETRY,
    Maximum,
    Median,
    Pooled,
    SumRatio,
    WeightedMean,
)
from asgdbench.study import report, rows

REPO = Path(__file__).resolve().parents[1]

DECLARE = """
from asgdbench.engine import telemetry as t

t.TELEMETRY += (t.Telemetry(
    "gradients_per_update", "gradients", "gradients computed per applied update",
    lambda end: end.total(t.COMPUTED) / end.applied if end.applied else None,
    tracks=(t.Track("gradients_per_update", "gradients/update", "Gradients per update.",
                    lambda run: run.gradients_per_update),)),)
t.FIGURES += (t.Figure(
    "gradients_per_update", "gradients/update",
    t.Median(lambda run: run.gradients_per_update), "grads-per-update", "grads/update",
    t.fixed("{:.2f}"), "gradients computed per applied update (median over runs)."),)
"""


def run_declared(body: str, tmp_path: Path, timeout: float = 300) -> dict:
    """Run ``body`` after :data:`DECLARE` in a fresh interpreter; the JSON it prints."""
    script = tmp_path / "declared.py"
    script.write_text(DECLARE + textwrap.dedent(body))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_metric_declared_once_reaches_the_record_table_csv_and_asv(tmp_path):
    seen = run_declared(f"""
        import csv, dataclasses, json, sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO / "tests")!r})
        from test_report import fake_run
        from asgdbench.engine.run_result import RunResult
        from asgdbench.study import report
        from asgdbench.study.result_folder import ResultStore
        from benchmarks import bench_training

        old = fake_run(seed=0)  # a runs.jsonl line written before the metric existed
        runs = [old]
        for seed, value in ((1, 1.5), (2, 2.5), (3, 4.0)):
            record = fake_run(seed=seed).to_dict()
            record["gradients_per_update"] = value
            runs.append(RunResult.from_dict(json.loads(json.dumps(record))))
        rows = report.summarize(runs)
        table = report.render(rows, ["updates", "grads-per-update"])
        store = ResultStore({str(tmp_path / "results")!r})
        store.folder.mkdir()
        store.write_summary(rows, table)
        with (store.folder / "summary.csv").open() as stream:
            [csv_row] = list(csv.DictReader(stream))
        method = bench_training.Execution.track_gradients_per_update
        print(json.dumps({{
            "old": old.gradients_per_update,
            "dict": runs[1].to_dict()["gradients_per_update"],
            "row": rows[0].gradients_per_update,
            "table": table,
            "csv": csv_row["gradients_per_update"],
            "csv_header": list(csv_row),
            "columns": report.column_names(),
            "track_unit": method.unit,
        }}))
    """, tmp_path)
    assert seen["old"] is None and seen["dict"] == 1.5
    assert seen["row"] == 2.5  # the median of 1.5, 2.5 and 4.0; the old run has none
    header, _, line = [line for line in seen["table"].splitlines() if line.startswith("|")]
    assert header.rstrip(" |").endswith("grads/update") and line.rstrip(" |").endswith("2.50")
    assert ("grads/update: gradients computed per applied update (median over runs)."
            in seen["table"])
    assert float(seen["csv"]) == 2.5
    # after the files' first columns, every figure in declaration order: the new one last
    assert seen["csv_header"][:len(rows.SUMMARY_LAYOUT)] == list(rows.SUMMARY_LAYOUT)
    assert seen["csv_header"][-1] == "gradients_per_update"
    assert seen["csv_header"].count("gradients_per_update") == 1
    assert seen["columns"][-2:] == ["grads-per-update", "test-acc"]
    assert seen["track_unit"] == "gradients/update"


def test_the_runner_measures_a_declared_metric(tmp_path):
    seen = run_declared("""
        import json
        from asgdbench.engine.runner import run

        result = run("mlp-digits", "seq", 1, max_updates=64, target_loss=None, max_time=None)
        print(json.dumps(result.to_dict()))
    """, tmp_path)
    assert seen["status"] == "budget" and seen["updates_applied"] == 64
    assert seen["gradients_per_update"] == 1.0  # seq applies every gradient it computes


# -- the declaration itself ---------------------------------------------------------

def test_record_fields_are_the_outcome_and_one_per_declared_telemetry_item():
    names = [field.name for field in RunResult.__dataclass_fields__.values()]
    assert names[-len(TELEMETRY):] == [item.name for item in TELEMETRY]
    assert len(set(names)) == len(names)


def test_a_record_without_a_telemetry_field_loads_with_its_empty_value():
    record = {"workload": "w", "algorithm": "seq", "threads": 1, "lr": 0.1, "batch_size": 1,
              "seed": 0, "target_loss": None, "max_time": 1.0, "max_updates": None,
              "status": "error", "wall_s": 0.0, "time_to_target_s": None,
              "steps_to_target": None, "loss_trace": [], "initial_loss": 1.0,
              "final_loss": None, "test_loss": None, "test_accuracy": None, "compile_s": 0.0}
    result = RunResult.from_dict(record)
    assert (result.updates_applied, result.cas, result.step_rule) == (0, None, {})
    assert result.staleness["count"] == 0 and result.staleness["mean"] is None


def test_every_figure_has_a_column_and_a_row_field():
    names = [figure.column for figure in FIGURES]
    assert len(set(names)) == len(names)
    assert set(names) <= set(report.column_names())
    fields = {field.name for field in rows.Row.__dataclass_fields__.values()}
    assert {figure.name for figure in FIGURES} <= fields


class _Run:
    def __init__(self, **values):
        self.__dict__.update(values)


def test_aggregations_follow_their_definitions():
    runs = [_Run(value=1.0, weight=1, part=1, whole=4, histogram={"histogram": {"0": 3}}),
            _Run(value=3.0, weight=3, part=None, whole=100, histogram={"histogram": {"8": 1}}),
            _Run(value=None, weight=5, part=3, whole=4, histogram={"histogram": {}})]
    assert Median(lambda run: run.value)(runs) == 2.0
    assert Maximum(lambda run: run.value)(runs) == 3.0
    assert SumRatio(lambda run: run.part, lambda run: run.whole)(runs) == 4 / 8
    assert WeightedMean(lambda run: run.value, lambda run: run.weight)(runs) == 10 / 4
    assert Pooled(lambda run: run.histogram, "mean")(runs) == 8 / 4
    assert Pooled(lambda run: run.histogram, "p99")(runs) == 8
    assert Median(lambda run: run.value)([]) is None
    assert SumRatio(lambda run: run.part, lambda run: run.whole)(runs[1:2]) is None


def test_measures_read_the_workers_counters():
    counters = np.zeros((2, telemetry.COUNTER_COLUMNS), np.int64)
    counters[:, COMPUTED] = (5, 7)
    counters[:, telemetry.APPLIED_COUNT] = (4, 6)
    counters[:, telemetry.DROPPED_COUNT] = (1, 1)
    threads = _Run(counters=counters)
    end = telemetry.RunEnd(telemetry=threads, wall_s=2.0, threads=2, lr=0.1, strategy=None,
                           state=(), vector_bytes=8, live={}, step_spec=None, rule_state=(),
                           monitor_lost_entries=0)
    by_name = {item.name: item for item in TELEMETRY}
    assert by_name["updates_applied"].measure(end) == 10
    assert by_name["gradients_dropped"].measure(end) == 2
    assert by_name["updates_per_s"].measure(end) == 5.0
    assert by_name["per_thread_gradients"].measure(end) == [5, 7]


@pytest.mark.parametrize("group", ["execution", "contention"])
def test_asv_tracks_are_the_declared_ones(group):
    sys.path.insert(0, str(REPO))
    from benchmarks import bench_training

    cls = {"execution": bench_training.Execution,
           "contention": bench_training.Contention}[group]
    declared = [track.name for track in telemetry.tracks(group)]
    assert sorted(name[len("track_"):] for name in dir(cls)
                  if name.startswith("track_")) == sorted(declared)
