"""The order a grid runs in: rounds of one seed, shuffled within, recorded in runs.jsonl.

A fake run function stands in for training: it returns a record whose time
grows with every call, a machine whose load drifts while the grid runs. In
strategy order the drift lands on whichever strategy runs last; interleaved,
it falls on every strategy alike.
"""

from __future__ import annotations

import dataclasses
from itertools import count

import numpy as np
import pytest
from claim_records import record
from cli_helpers import in_process, read_runs

from asgdbench.engine.run_result import RunResult
from asgdbench.errors import ConfigError
from asgdbench.plugins.workloads import get_workload
from asgdbench.study import grid
from asgdbench.study.rows import summarize

SPEC = get_workload("mlp-digits")


def cells(strategies=("seq", "lock", "leashed:tp=inf"), repeats=4):
    return grid.expand(SPEC, grid.parse_specs(strategies)[0], [1], None, repeats)


def test_interleaved_runs_rounds_of_one_seed_each_in_a_seeded_shuffle():
    listed = cells()
    ordered = grid.order_cells(listed, grid.INTERLEAVED, order_seed=3)
    assert sorted(ordered, key=listed.index) == listed  # every cell once
    assert [c.seed for c in ordered] == sorted(c.seed for c in listed)  # round by round
    rounds = [[c.strategy.label for c in ordered if c.seed == seed] for seed in range(4)]
    assert len({tuple(r) for r in rounds}) > 1  # each round shuffled on its own
    assert grid.order_cells(listed, grid.INTERLEAVED, 3) == ordered  # reproducible (resume)
    assert grid.order_cells(listed, grid.INTERLEAVED, 4) != ordered  # the seed matters
    assert grid.order_cells(listed, grid.BY_STRATEGY) == listed
    with pytest.raises(ConfigError, match="order must be one of"):
        grid.order_cells(listed, "random")


def drifting_runs():
    """A run function whose time grows by 5 % with each run made: the machine's load drifts."""
    clock = count()

    def run_cell(workload, config):
        time = 1.0 + 0.05 * next(clock)
        return dataclasses.replace(record(config.strategy.label, config.threads, config.seed,
                                          time=time), config=config)
    return run_cell


@pytest.mark.parametrize("order", grid.ORDERS)
def test_compare_records_the_order_and_interleaving_spreads_load_drift(order, tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.setattr(grid, "run_cell", drifting_runs())
    out = tmp_path / order
    done = in_process(capsys, "compare", "--strategies", "seq,leashed:tp=inf", "--threads", "1",
                      "--repeats", "6", "--order", order, "--out", out)
    assert done.returncode == 0, done.stderr
    runs = [RunResult.from_dict(run) for run in read_runs(out)]
    assert [r.grid_order["position"] for r in runs] == list(range(12))
    assert {r.grid_order["order"] for r in runs} == {order}
    assert all(r.grid_order["round"] == r.config.seed for r in runs)
    median = {label: np.median([r.time_to_target_s for r in runs if r.config.label == label])
              for label in ("seq", "leashed:tp=inf")}
    ratio = median["leashed:tp=inf"] / median["seq"]
    if order == grid.INTERLEAVED:  # the same work under the same drift
        assert [r.config.seed for r in runs] == sorted(r.config.seed for r in runs)
        assert abs(ratio - 1) < 0.1
    else:  # the last strategy took the drift: a false 30 % difference
        assert ratio > 1.2


def test_a_grid_with_nothing_left_to_run_draws_no_progress_bar(capsys):
    grid.run_grid(None, [], lambda result: None)
    assert capsys.readouterr().err == ""


def test_the_table_lists_strategies_as_given_whatever_order_they_ran_in(tmp_path, capsys,
                                                                        monkeypatch):
    """Interleaved, the first run of round 0 may be any strategy's; the table's rows (and
    summary.csv's) still follow --strategies. A folder whose runs lack the record (written
    before it existed) keeps the order in which its strategies first appear."""
    monkeypatch.setattr(grid, "run_cell", drifting_runs())
    given = ["lock", "seq", "leashed:tp=inf", "hogwild"]
    first_seen = []
    for order_seed in range(4):  # shuffles where, in most, lock does not run first
        out = tmp_path / f"seed-{order_seed}"
        done = in_process(capsys, "compare", "--strategies", ",".join(given), "--threads", "1",
                          "--repeats", "2", "--order-seed", str(order_seed), "--out", out)
        assert done.returncode == 0, done.stderr
        runs = [RunResult.from_dict(run) for run in read_runs(out)]
        assert [r.grid_order["listed"] for r in runs] != list(range(8))  # they were shuffled
        assert [row.strategy for row in summarize(runs)] == given
        ran = list(dict.fromkeys(r.config.label for r in runs))
        unrecorded = [dataclasses.replace(r, grid_order={}) for r in runs]
        assert [row.strategy for row in summarize(unrecorded)] == ran
        first_seen.append(ran)
    assert any(ran != given for ran in first_seen)  # the record, not luck, set the order
