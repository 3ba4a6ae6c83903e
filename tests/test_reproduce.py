"""Tests for ``asgdbench reproduce``: plans, seed planning, and a tiny real run.

The verdict rules are fed synthetic records in ``tests/test_verdicts.py``.
The real run uses a test-only scale (one
seed, a fraction of a second per run) and checks the plumbing: every section,
figure and verdict in the HTML (parsed with the standard library), resume
doing exactly the missing runs, ``report DIR`` rendering the same report
again, and one-line errors for bad options.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from claim_records import LR, WORKLOAD, record

from asgdbench.engine.monitor import LiveVectorSampler
from asgdbench.engine.run_result import RunResult
from asgdbench.plugins.workloads import available_workloads
from asgdbench.study import claim_statistics as cs
from asgdbench.study import claims, grid
from asgdbench.study.claims import CLAIMS, HOGWILD, LEASHED, LOCK, VERDICTS, Context
from asgdbench.study.cli import main
from asgdbench.study.reproduce import (
    MANIFEST,
    judge,
    make_plan,
    parse_claims,
    plan_seeds,
    split_by_regime,
)

TINY = claims.Scale("tiny", 1, (1.0, 4.0), 1, 0.01, (WORKLOAD,), "seconds (tests only)",
                    sparse_workloads=("logreg-zipf",))
SPARSE_HERE = "logreg-zipf" in available_workloads()
"""Whether the sparse workloads are registered (issue 22): claim 6 runs, or reads not testable."""


def test_the_live_vector_mean_weighs_each_count_by_how_long_it_lasted():
    sampler = LiveVectorSampler.empty()
    for seconds, count in ((0.0, 1), (1.0, 3), (1.5, 2)):
        sampler.sample(seconds, count)
    summary = sampler.summary(end_s=3.5)
    # 1 for 1 s, 3 for 0.5 s, 2 for 2 s: (1 + 1.5 + 4) / 3.5
    assert summary["mean"] == pytest.approx(6.5 / 3.5)
    assert summary["max"] == 3 and summary["samples"] == 3
    assert LiveVectorSampler.empty().summary(1.0) == {}
    constant = LiveVectorSampler.empty()
    for seconds in (0.026, 0.225, 0.257, 0.307):  # summed as is, 3.0000000000000004
        constant.sample(seconds, 3)
    assert constant.summary(end_s=1.147)["mean"] == 3 == constant.summary(1.147)["max"]


def test_quick_plans_fit_two_cores_and_share_runs_between_claims():
    plan = make_plan(claims.SCALES["quick"], claims.CLAIM_NUMBERS, [WORKLOAD], cores=2)
    cells = plan.cells[WORKLOAD]
    assert len({config.key() for config in cells}) == len(cells)
    assert {config.threads for config in cells} == {2, 4}
    # claims 1, 3 and 5 read the same runs at 2 threads and the default step size
    assert len([c for c in cells if c.strategy == LEASHED and c.threads == 2
                and c.lr == LR]) == claims.SCALES["quick"].seeds == 8
    # a few seconds each: 208 runs over both workloads took 8 min 3 s on 2 cores; 15 is the cap
    assert len(cells) <= 16 * 8
    order = [config.seed for config in cells]
    assert order == sorted(order)  # seed by seed: strategies interleaved under the same load
    first_round = [config.strategy for config in cells if config.seed == 0]
    assert first_round != sorted(first_round, key=[c.strategy for c in cells].index)  # shuffled
    assert make_plan(claims.SCALES["quick"], claims.CLAIM_NUMBERS, [WORKLOAD],
                     cores=2).cells[WORKLOAD] == cells  # the same order every time (resume)


def test_quick_runs_claim_2_on_its_first_workload_only():
    plan = make_plan(claims.SCALES["quick"], claims.CLAIM_NUMBERS, [WORKLOAD, "mlp-mnist"],
                     cores=2)
    lrs = {name: {c.lr for c in cells} for name, cells in plan.cells.items()}
    assert len(lrs[WORKLOAD]) == 3 and len(lrs["mlp-mnist"]) == 1
    assert any("claim 2 runs on mlp-digits only" in note for note in plan.notes)
    assert plan.workloads_of(2) == (WORKLOAD,) and plan.workloads_of(1) == plan.workloads


def test_seed_planning_asks_for_more_seeds_the_noisier_the_pilot():
    def pilot(noise):
        runs = []
        for seed in range(5):
            runs.append(record(LEASHED, 2, seed, time=1.0 * noise[seed]))
            for label in (LOCK, HOGWILD):
                runs.append(record(label, 2, seed, time=1.3 * noise[(seed + 1) % 5]))
        return runs
    scale = claims.SCALES["standard"]
    context = Context(2, {WORKLOAD: LR})
    quiet = plan_seeds(pilot([1.0, 1.02, 0.98, 1.01, 0.99]), [WORKLOAD], context, scale)
    loud = plan_seeds(pilot([1.0, 1.3, 0.8, 1.2, 0.85]), [WORKLOAD], context, scale)
    assert quiet.seeds is not None and loud.seeds is not None
    assert 5 <= quiet.seeds < loud.seeds
    assert f"needs {loud.seeds} seeds" in loud.reason


def test_planned_seeds_give_every_direction_part_of_claim_1_its_power_together():
    # one thread count, two baselines sharing each seed's Leashed run: planned at 0.8 per
    # comparison, both were supported together only about 70 % of the time
    spread = [0.3, -0.3, 0.15, -0.15, 0.0]  # log ratios with sd 0.24
    runs = []
    for seed in range(5):
        runs.append(record(LEASHED, 2, seed, time=1.0))
        for label in (LOCK, HOGWILD):
            runs.append(record(label, 2, seed, time=1.2 * math.exp(spread[seed])))
    found = plan_seeds(runs, [WORKLOAD], Context(2, {WORKLOAD: LR}), claims.SCALES["standard"])
    assert found.comparisons == 2 and found.seeds is not None
    assert "1.44x" in found.reason  # what the magnitude parts can detect, said
    # each log ratio: its own noise minus the shared Leashed noise, so sd = spread / sqrt(2)
    # per run; Monte Carlo of both direction parts of claim 1 at the planned seeds
    rng = np.random.default_rng(3)
    noise = found.spread / math.sqrt(2)
    both = []
    for _ in range(600):
        leashed = noise * rng.standard_normal(found.seeds)
        lows = [cs.hodges_lehmann(math.log(1.2) + noise * rng.standard_normal(found.seeds)
                                  - leashed).low for _ in range(2)]
        both.append(min(lows) > 0)
    assert np.mean(both) >= 0.77  # 80 % promised, Monte Carlo error about 1.6 %


# -- seeds: --seeds N, and planning from a pilot (fake runs: no training) -------------------

def fake_runs(spread: float):
    """A run function: time to ε with a per-seed, per-strategy noise of ``spread`` (in log)."""
    def run_cell(workload, config):
        noise = np.random.default_rng([config.seed, len(config.strategy.label), config.threads])
        time = 1.0 * float(np.exp(spread * noise.standard_normal()))
        return dataclasses.replace(record(config.strategy, config.threads, config.seed,
                                          lr=config.lr, time=time, max_time=config.max_time),
                                   config=config)
    return run_cell


PLANNED = claims.Scale("planned", 5, (1.0, 4.0), 1, 0.01, (WORKLOAD,), "tests",
                       planned_seeds=12)


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def test_a_planned_scale_runs_a_pilot_then_the_seeds_it_needs(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setitem(claims.SCALES, "planned", PLANNED)
    monkeypatch.setattr(grid, "run_cell", fake_runs(spread=0.15))
    code, out, err = run_cli(capsys, "reproduce", "--scale", "planned", "--claims", "1",
                             "--out", tmp_path / "planned")
    assert code == 0, err
    runs = [RunResult.from_dict(json.loads(line))
            for line in (tmp_path / "planned" / "runs.jsonl").read_text().splitlines()]
    seeds = {run.config.seed for run in runs}
    planned = manifest_of(tmp_path / "planned")["seeds"]
    assert 5 < planned <= 12 and seeds == set(range(planned))
    assert "seed planning: pilot of 5 seeds" in err and f"running {planned} seeds" in err
    assert "seed planning" in (tmp_path / "planned" / "report.md").read_text()


def test_seeds_overrides_the_scale_and_skips_planning(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setitem(claims.SCALES, "planned", PLANNED)
    monkeypatch.setattr(grid, "run_cell", fake_runs(spread=0.1))
    code, _, err = run_cli(capsys, "reproduce", "--scale", "planned", "--claims", "1",
                           "--seeds", "6", "--out", tmp_path / "six")
    assert code == 0, err
    assert manifest_of(tmp_path / "six")["seeds"] == 6 and "seed planning" not in err
    assert len((tmp_path / "six" / "runs.jsonl").read_text().splitlines()) == 3 * 6


def test_too_few_seeds_are_run_but_named_as_unable_to_judge(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(grid, "run_cell", fake_runs(spread=0.1))
    code, _, err = run_cli(capsys, "reproduce", "--claims", "1", "--seeds", "2",
                           "--workloads", WORKLOAD, "--out", tmp_path / "two")
    assert code == 0, err
    assert "--seeds 2 is fewer than the 5 seed pairs" in err
    assert "not testable here" in (tmp_path / "two" / "report.md").read_text()
    code, _, err = run_cli(capsys, "reproduce", "--claims", "1", "--seeds", "5",
                           "--workloads", WORKLOAD, "--out", tmp_path / "five")
    assert code == 0, err
    assert "fewer than" not in err


def test_report_of_an_unfinished_reproduce_folder_says_it_is_incomplete(capsys, tmp_path,
                                                                       monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(grid, "run_cell", fake_runs(spread=0.1))
    out = tmp_path / "cut"
    code, _, err = run_cli(capsys, "reproduce", "--claims", "4", "--seeds", "1",
                           "--workloads", WORKLOAD, "--out", out)
    assert code == 0, err
    code, _, err = run_cli(capsys, "report", out)
    assert code == 0 and "incomplete" not in err, err
    lines = (out / "runs.jsonl").read_text().splitlines(keepends=True)
    (out / "runs.jsonl").write_text("".join(lines[:-2]))
    code, stdout, err = run_cli(capsys, "report", out)
    assert code == 0, err
    assert f"incomplete: 2 of {len(lines)} planned runs are missing" in err
    assert f"--resume --out {out}" in err and "verdict" in stdout


# -- claim 6: the sparse regime, on its own workloads -------------------------------------

def test_claim_6_plans_plain_hogwild_lock_and_leashed_on_its_own_workloads():
    scale = dataclasses.replace(claims.SCALES["quick"], sparse_workloads=("mlp-mnist", WORKLOAD))
    plan = make_plan(scale, claims.CLAIM_NUMBERS, [WORKLOAD], cores=2)
    assert plan.workloads_of(6) == ("mlp-mnist",)  # quick: the first sparse workload only
    assert plan.workloads_of(1) == (WORKLOAD,)
    sparse = plan.cells["mlp-mnist"]
    assert {c.strategy for c in sparse} == {claims.SPARSE_HOGWILD, claims.SPARSE_LOCK, LEASHED}
    assert len(sparse) == 3 * scale.seeds and {c.threads for c in sparse} == {2}
    assert [c.seed for c in sparse] == sorted(c.seed for c in sparse)  # rounds of one seed
    assert "claim 6 runs on mlp-mnist only at quick scale (to fit its budget)" in plan.notes
    # without claim 6 the sparse workloads are not planned at all
    dense_only = make_plan(scale, (1, 5), [WORKLOAD], cores=2)
    assert set(dense_only.cells) == {WORKLOAD} and dense_only.sparse_workloads == ()


def test_workloads_named_replace_their_own_regimes_defaults():
    quick = claims.SCALES["quick"]
    assert split_by_regime([WORKLOAD, "mf-synthetic"], quick) == ((WORKLOAD,), ("mf-synthetic",))
    assert split_by_regime([WORKLOAD], quick) == ((WORKLOAD,), quick.sparse_workloads)
    assert split_by_regime(["logreg-zipf"], quick) == ((), ("logreg-zipf",))


def test_a_sparse_workload_not_registered_is_not_testable_and_stops_nothing_else():
    scale = dataclasses.replace(TINY, sparse_workloads=("no-such-sparse",))
    plan = make_plan(scale, (1, 6), [WORKLOAD], cores=2)
    assert set(plan.cells) == {WORKLOAD} and "no-such-sparse" in plan.missing
    assert any("'no-such-sparse' is not registered" in note for note in plan.notes)
    verdicts = judge(plan, [])
    six = [v for v in verdicts if v.claim == 6]
    assert [(v.workload, v.verdict) for v in six] == [("no-such-sparse", claims.NOT_TESTABLE)]
    assert "cannot run here: not registered" in six[0].reason


def test_reproduce_claim_6_alone_runs_only_its_workloads_and_writes_its_section(
        capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    scale = dataclasses.replace(PLANNED, name="regime", planned_seeds=None,
                                sparse_workloads=(WORKLOAD, "no-such-sparse"))
    monkeypatch.setitem(claims.SCALES, "regime", scale)
    monkeypatch.setattr(grid, "run_cell", fake_runs(spread=0.05))
    out = tmp_path / "regime"
    code, stdout, err = run_cli(capsys, "reproduce", "--scale", "regime", "--claims", "6",
                                "--out", out)
    assert code == 0, err
    runs = [RunResult.from_dict(json.loads(line))
            for line in (out / "runs.jsonl").read_text().splitlines()]
    assert {r.config.strategy for r in runs} == {claims.SPARSE_HOGWILD, claims.SPARSE_LOCK,
                                                 LEASHED}
    assert len(runs) == 3 * scale.seeds  # no dense claim, no dense workload
    parsed = parse_report(out)
    assert list(parsed.verdicts) == [6] and parsed.figures[6] == 1
    assert parsed.verdicts[6][1] == claims.NOT_TESTABLE  # no-such-sparse
    assert parsed.verdicts[6][0] in VERDICTS
    markdown = (out / "report.md").read_text()
    assert "no-such-sparse: not run here (not registered in this asgdbench)" in markdown
    assert manifest_of(out)["sparse_workloads"] == [WORKLOAD, "no-such-sparse"]
    code, _, _ = run_cli(capsys, "report", out)  # the plan, sparse workloads too, read back
    assert code == 0 and (out / "report.md").read_text() == markdown


# -- a tiny real run through the command line --------------------------------------------

class _ReportParser(HTMLParser):
    """Claim sections, their figures (embedded PNGs) and verdicts, from report.html."""

    def __init__(self) -> None:
        super().__init__()
        self.claim: int | None = None
        self.depth = 0
        self.figures: Counter = Counter()
        self.verdicts: dict[int, list[str]] = {}
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and "data-claim" in attrs:
            self.claim = int(attrs["data-claim"])
            self.verdicts.setdefault(self.claim, [])
        if tag == "img":
            source = attrs.get("src", "")
            if source.startswith("data:image/png;base64,") and self.claim is not None:
                self.figures[self.claim] += 1
            elif not source.startswith("data:"):
                self.external.append(source)
        if tag in ("link", "script") and (attrs.get("href") or attrs.get("src")):
            self.external.append(attrs.get("href") or attrs.get("src"))
        if tag == "div" and "data-verdict" in attrs and self.claim is not None:
            self.verdicts[self.claim].append(attrs["data-verdict"])

    def handle_endtag(self, tag):
        if tag == "section":
            self.claim = None


def parse_report(folder: Path) -> _ReportParser:
    parser = _ReportParser()
    parser.feed((folder / "report.html").read_text())
    return parser


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """One real reproduce run at the test-only scale (every claim, about 13 short runs)."""
    pytest.importorskip("matplotlib")  # the report's figures; part of the dev extra
    folder = tmp_path_factory.mktemp("reproduce") / "tiny"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(claims.SCALES, "tiny", TINY)
        assert main(["reproduce", "--scale", "tiny", "--out", str(folder)]) == 0
    return folder


@pytest.fixture
def tiny_scale(monkeypatch):
    monkeypatch.setitem(claims.SCALES, "tiny", TINY)


def test_a_real_run_writes_every_claim_section_figure_and_verdict(tiny_folder):
    parsed = parse_report(tiny_folder)
    numbers = [claim.number for claim in CLAIMS]
    assert sorted(parsed.verdicts) == numbers
    for number in numbers:
        if number != 6 or SPARSE_HERE:  # claim 6 without its workload: no runs, no figure
            assert parsed.figures[number] >= 1, f"claim {number} has no embedded figure"
        assert len(parsed.verdicts[number]) == 1 and parsed.verdicts[number][0] in VERDICTS
    if not SPARSE_HERE:
        assert parsed.verdicts[6] == [claims.NOT_TESTABLE]
    assert parsed.external == []  # self-contained: nothing to fetch
    markdown = (tiny_folder / "report.md").read_text()
    assert "load average (1 min, when each run ended" in markdown
    for claim in CLAIMS:
        assert f"## Claim {claim.number}: {claim.title}" in markdown
        assert claim.rule in markdown
    for figure in (tiny_folder / "figures").iterdir():
        assert figure.read_bytes().startswith(b"\x89PNG")
        assert f"figures/{figure.name}" in markdown


def test_live_vector_samples_agree_with_what_each_strategy_holds(tiny_folder):
    runs = [RunResult.from_dict(json.loads(line))
            for line in (tiny_folder / "runs.jsonl").read_text().splitlines()]
    for workload in {run.config.workload for run in runs}:  # claim 6 runs on its own
        mine = [run for run in runs if run.config.workload == workload]
        positions = sorted(run.grid_order["position"] for run in mine)
        assert positions == list(range(len(mine)))  # where it stood in its workload's plan
    assert all(run.grid_order["round"] == run.config.seed for run in runs)
    for run in runs:
        live = run.live_param_vectors
        assert live["samples"] >= 1
        if run.config.strategy in (LOCK, HOGWILD):  # the shared vector and per-step copies
            assert 1 <= live["mean"] <= live["max"] <= run.peak_param_vectors
            assert run.peak_param_vectors <= 1 + run.config.threads
        else:  # Leashed: at least latest, never more than its pool's high-water mark
            assert 1 <= live["mean"] <= live["max"] <= run.peak_param_vectors
            assert run.peak_param_vectors <= 2 * run.config.threads + 1


def test_report_dir_renders_the_same_report_again(tiny_folder, tiny_scale, capsys, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_folder, copy)
    before = (copy / "report.md").read_text()
    (copy / "report.md").unlink()
    (copy / "report.html").unlink()
    code, out, _ = run_cli(capsys, "report", copy)
    assert code == 0
    assert (copy / "report.md").read_text() == before
    assert "| 1. Time to convergence" in out
    assert parse_report(copy).verdicts.keys() == {1, 2, 3, 4, 5, 6}


def test_resume_does_exactly_the_missing_runs(tiny_folder, tiny_scale, capsys, tmp_path):
    copy = tmp_path / "resumed"
    shutil.copytree(tiny_folder, copy)
    lines = (copy / "runs.jsonl").read_text().splitlines(keepends=True)
    kept = lines[:-3]
    (copy / "runs.jsonl").write_text("".join(kept))
    code, _, err = run_cli(capsys, "reproduce", "--scale", "tiny", "--out", copy, "--resume")
    assert code == 0
    plan = make_plan(TINY, claims.CLAIM_NUMBERS, [WORKLOAD],
                     cores=json.loads((copy / MANIFEST).read_text())["cores"])
    planned = {c.key() for cells in plan.cells.values() for c in cells}
    assert len(plan.cells[WORKLOAD]) == 13  # the dense claims' runs: claim 6 adds its own
    assert f"3 of {len(lines)} runs to do" in err and len(lines) == len(planned)
    after = (copy / "runs.jsonl").read_text().splitlines(keepends=True)
    assert after[:len(kept)] == kept  # finished runs untouched
    keys = Counter(RunResult.from_dict(json.loads(line)).config.key() for line in after)
    assert set(keys) == planned and max(keys.values()) == 1


def test_runs_found_twice_are_judged_once(tiny_folder, tiny_scale, capsys, tmp_path):
    copy = tmp_path / "twice"
    shutil.copytree(tiny_folder, copy)
    before = (copy / "report.md").read_text()
    lines = (copy / "runs.jsonl").read_text().splitlines(keepends=True)
    (copy / "runs.jsonl").write_text("".join(lines + lines))  # a file pasted onto itself
    code, _, err = run_cli(capsys, "report", copy)
    assert code == 0
    assert f"holds {len(lines)} run(s) more than once" in err
    assert (copy / "report.md").read_text() == before  # the same verdicts, the same counts


@pytest.mark.parametrize("options, fragment", [
    (["--claims", "0"], "--claims takes claim numbers"),
    (["--claims", "1,x"], "--claims takes claim numbers"),
    (["--scale", "huge"], "--scale must be one of quick, standard, paper"),
    (["--workloads", "no-such-workload"], "unknown workload"),
    (["--seeds", "0"], "--seeds"),
])
def test_bad_options_are_one_line_and_exit_2(capsys, tmp_path, options, fragment):
    code, out, err = run_cli(capsys, "reproduce", *options, "--out", tmp_path / "never")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("asgdbench: error: ") and fragment in err
    assert not (tmp_path / "never").exists()


def test_parse_claims_sorts_and_deduplicates():
    assert parse_claims("5, 1,5") == (1, 5)


def test_physical_cores_count_only_cores_this_process_may_use():
    import os

    from asgdbench.study.reproduce import physical_cores

    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))
