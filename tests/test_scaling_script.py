"""benchmarks/scripts/scaling.py: its plan, its budget arithmetic, its refusals, its folder.

No training here: the plan is checked against the issue's grid, and the folder's plumbing runs
on fake runs (``grid.run_cell`` replaced), so the file stays fast in the default suite.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from claim_records import record

from asgdbench.study import grid, reproduce
from asgdbench.study.claims import LEASHED_TP
from asgdbench.study.verdicts import CONTRADICTED, NOT_TESTABLE, SUPPORTED

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "scripts"))
import scaling  # noqa: E402


def cells_by_strategy(configs) -> dict[str, set[int]]:
    threads = defaultdict(set)
    for config in configs:
        threads[config.strategy.label].add(config.threads)
    return dict(threads)


def test_the_full_plan_is_the_issues_grid_with_one_time_limit_that_fits_the_budget():
    experiment = scaling.plan_experiment(scaling.FULL, cores=16)
    cells = experiment.plan.cells[scaling.WORKLOAD]
    assert cells_by_strategy(cells) == {
        "lock-per-step-copy": {1, 2, 4, 8, 16}, "hogwild-per-step-copy": {1, 2, 4, 8, 16},
        "leashed:tp=inf": {1, 2, 4, 8, 16, 32},
        "leashed:tp=0": {2, 4, 8, 16, 32}, "leashed:tp=1": {2, 4, 8, 16, 32}, "seq": {1}}
    assert len(cells) == 27 * 5 == len({config.key() for config in cells})
    assert {config.seed for config in cells} == set(range(5))
    # every run shares the stop rules (what lets claims share runs and --resume hold)
    assert {(c.max_time, c.target_loss, c.batch_size) for c in cells} == {
        (experiment.time_limit_s, scaling.TARGET_LOSS, 16)}
    # rounds of one seed: each seed's cells run before the next seed's
    assert [config.seed for config in cells] == sorted(config.seed for config in cells)
    assert cells_by_strategy(experiment.throughput) == {s.label: {16} for s in scaling.THROUGHPUT}
    assert {(c.target_loss, c.max_time, c.batch_size) for c in experiment.throughput} == {
        (None, 1.0, 16)}
    # the budget: 135 runs x (limit + overhead) + 15 x (1 s + overhead) + compile + fixed,
    # the limit rounded down to 0.01 s, so the worst case is within 135 x 0.01 s of 480 s
    size = scaling.FULL
    worst = (size.compile_s + size.fixed_s + 135 * (experiment.time_limit_s + size.overhead_s)
             + 15 * (1.0 + size.overhead_s))
    assert worst == pytest.approx(experiment.worst_case_s)
    assert 480 - 135 * 0.01 <= worst <= 480
    assert "at most 479 s of the 480 s budget" in experiment.text()


def test_the_judges_get_the_real_cores_and_the_design_its_own_counts():
    """On 2 cores the full design keeps its thread counts; the plan records the 2 cores, so
    the verdicts count only thread counts within them."""
    experiment = scaling.plan_experiment(scaling.FULL, cores=2)
    assert experiment.plan.cores == 2
    assert cells_by_strategy(experiment.plan.cells[scaling.WORKLOAD])["leashed:tp=0"] == {
        2, 4, 8, 16, 32}


def test_a_budget_that_cannot_hold_the_runs_is_one_line_and_exit_2(capsys, tmp_path):
    code = scaling.main(["--out", str(tmp_path / "out"), "--budget-s", "200", "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("scaling: error: a budget of 200 s cannot hold 135 runs")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, fragment", [
    (["--threads", "1,x"], "numbers separated by commas"),
    (["--threads", "0,2"], "between 1 and 1024"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--budget-s", "-5"], "--budget-s must be > 0"),
    (["--target-loss", "0"], "--target-loss must be > 0"),
])
def test_bad_options_are_one_line_and_exit_2(capsys, tmp_path, options, fragment):
    code = scaling.main(["--out", str(tmp_path), "--dry-run", *options])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0]


def test_the_guard_saves_each_run_then_stops_before_one_that_could_overrun():
    saved, now = [], [0.0]

    class Store:
        def append(self, result):
            saved.append(result)

    on_result = scaling.guarded(Store(), deadline=10.0, next_run_s=3.0, clock=lambda: now[0])
    on_result("first")  # 0 + 3 <= 10: go on
    now[0] = 7.5
    with pytest.raises(scaling.BudgetSpent):
        on_result("second")  # 7.5 + 3 > 10: stop, but only after saving it
    assert saved == ["first", "second"]


def _runs(strategy, threads, times, *, max_time=2.0, rate=None):
    out = []
    for seed, time in enumerate(times):
        result = record(strategy, threads, seed, lr=0.05, time=time, max_time=max_time,
                        workload=scaling.WORKLOAD, converged=time < max_time)
        if rate is not None:
            result = dataclasses.replace(result, updates_per_s=rate * (1 + 0.01 * seed))
        out.append(result)
    return out


def test_the_targets_are_judged_per_seed_pair_against_their_thresholds():
    seq_times = [1.0, 1.2, 0.9, 1.1, 1.05]
    main = (_runs("seq", 1, seq_times) + _runs("leashed:tp=inf", 2, [0.5 * t for t in seq_times])
            + _runs("lock-per-step-copy", 2, [0.8 * t for t in seq_times]))
    throughput = (_runs("leashed:tp=inf", 16, [1] * 5, rate=1000)
                  + _runs("hogwild", 16, [1] * 5, rate=1000 / 0.95)   # ratio 0.95 >= 0.9
                  + _runs("lock", 16, [1] * 5, rate=1000 / 1.1))      # ratio 1.1 < 1.3
    targets = scaling.performance_targets(main, throughput, 0.05, cores=16, top=16)
    assert [t.verdict for t in targets] == [SUPPORTED, "report", SUPPORTED, CONTRADICTED]
    assert targets[0].measured.startswith("0.50")
    assert targets[3].measured.startswith("1.10")
    # on fewer cores than the target's 16 threads: measured, but not testable here
    fewer = scaling.performance_targets(main, throughput, 0.05, cores=8, top=16)
    assert [t.verdict for t in fewer[2:]] == [NOT_TESTABLE, NOT_TESTABLE]
    assert "16 threads, each on a core" in fewer[2].reason
    # SEQ censored at the limit in every pair, Leashed converged: the ratio is at most 0.5 / 2
    censored_seq = _runs("seq", 1, [5.0] * 5) + main[5:]
    ratio = scaling.performance_targets(censored_seq, throughput, 0.05, 16, 16)[0]
    assert ratio.verdict == SUPPORTED and math.isclose(float(ratio.measured.split()[0]),
                                                       np.median([0.5 * t / 2.0
                                                                  for t in seq_times]),
                                                       rel_tol=0.01)


def fake_run_cell(workload, config):
    time = 0.3 + 0.01 * config.seed + 0.1 * (config.strategy.label == "seq")
    result = record(config.strategy, config.threads, config.seed, lr=config.lr, time=time,
                    max_time=config.max_time or 1.0, workload=config.workload)
    return dataclasses.replace(result, config=config)


def test_a_run_writes_the_folder_that_report_renders_again_and_resume_completes(
        capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(scaling, "WORKLOAD", "mlp-digits")  # download-free; no training anyway
    monkeypatch.setattr(grid, "run_cell", fake_run_cell)
    out = tmp_path / "scaling"
    options = ["--out", str(out), "--threads", "1,2,4", "--oversubscribe", "8", "--seeds", "5",
               "--budget-s", "300"]
    assert scaling.main(options) == 0
    printed = capsys.readouterr().out
    for name in ("runs.jsonl", "reproduce.json", "report.md", "report.html", "scaling.md",
                 "throughput/runs.jsonl"):
        assert (out / name).is_file(), name
    runs = (out / "runs.jsonl").read_text().splitlines()
    assert len(runs) == (9 + 2 * 3 + 1 + 1) * 5  # claim 1, tp=0/1 from 2, tp=inf at 8, SEQ
    assert len((out / "throughput" / "runs.jsonl").read_text().splitlines()) == 3 * 5
    assert "## Performance targets" in printed and "4. Contention regulation" in printed
    # the manifest holds the script's own scale, so `asgdbench report DIR` plans it again
    manifest = json.loads((out / "reproduce.json").read_text())
    assert manifest["scale_definition"]["thread_counts"] == [1, 2, 4]
    again = reproduce.read_plan(out)
    assert again.scale.oversubscribed == (8,) and again.scale.target_loss == scaling.TARGET_LOSS
    assert cells_by_strategy(again.cells["mlp-digits"])["leashed:tp=0"] == {2, 4, 8}
    # --resume after losing runs does exactly those, under the same stop rules
    lines = (out / "runs.jsonl").read_text().splitlines()
    (out / "runs.jsonl").write_text("\n".join(lines[:-7]) + "\n")
    calls = []
    monkeypatch.setattr(grid, "run_cell", lambda w, c: calls.append(c) or fake_run_cell(w, c))
    limit = reproduce.read_plan(out).scale.max_time_s
    # another budget would give another time limit: a resume keeps the one its runs had
    assert scaling.main([*options[:-1], "250", "--resume"]) == 0
    assert len(calls) == 7 and {c.max_time for c in calls} == {limit}
    assert len((out / "runs.jsonl").read_text().splitlines()) == len(lines)
    # without --resume, a folder that holds runs is refused in one line
    capsys.readouterr()
    assert scaling.main(options) == 2
    assert "already holds runs" in capsys.readouterr().err


def test_a_spent_budget_leaves_runs_pending_and_says_so(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(scaling, "WORKLOAD", "mlp-digits")
    monkeypatch.setattr(grid, "run_cell", fake_run_cell)
    clock = iter(np.arange(0.0, 1e6, 40.0))  # every reading 40 s later than the last
    monkeypatch.setattr(scaling, "monotonic", lambda: float(next(clock)))
    out = tmp_path / "short"
    assert scaling.main(["--out", str(out), "--reduced", "--budget-s", "150"]) == 0
    done = len((out / "runs.jsonl").read_text().splitlines())
    assert 0 < done < 24
    assert "--resume finishes them" in (out / "scaling.md").read_text()


def test_claim_4_runs_no_tp_cells_at_one_thread():
    """tp bounds contention; one thread has none, so claim 4 plans from 2 threads."""
    experiment = scaling.plan_experiment(scaling.REDUCED, cores=2)
    tp_threads = {c.threads for c in experiment.plan.cells[scaling.WORKLOAD]
                  if c.strategy in LEASHED_TP[:2]}
    assert tp_threads == {2, 4}
