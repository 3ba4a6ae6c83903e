"""Tests for ``asgdbench reproduce``: verdict rules on synthetic runs, and a tiny real run.

The verdict rules are fed run records built here with known figures, so that
each claim must come out ``supported``, ``not supported`` and ``not testable
here`` on records made to be each. The real run uses a test-only scale (one
seed, a fraction of a second per run) and checks the plumbing: every section,
figure and verdict in the HTML (parsed with the standard library), resume
doing exactly the missing runs, ``report DIR`` rendering the same report
again, and one-line errors for bad options.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from asgdbench.engine.monitor import LiveVectorSampler
from asgdbench.engine.run_result import RunResult
from asgdbench.study import claims
from asgdbench.study.claims import (
    CLAIMS,
    HOGWILD,
    LEASHED,
    LOCK,
    NOT_SUPPORTED,
    NOT_TESTABLE,
    SUPPORTED,
    VERDICTS,
    Context,
)
from asgdbench.study.cli import main
from asgdbench.study.reproduce import MANIFEST, make_plan, parse_claims

WORKLOAD, LR = "mlp-digits", 0.01
VECTOR_BYTES = 1000
TINY = claims.Scale("tiny", 1, (1.0, 4.0), 1, 0.01, (WORKLOAD,), "seconds (tests only)")


def record(algorithm: str, threads: int, seed: int, *, lr: float = LR, time: float = 1.0,
           converged: bool = True, staleness: float = 1.0, failures_per_update: float = 0.0,
           dropped_share: float = 0.0, live_vectors: float = 2.0, max_time: float = 10.0,
           workload: str = WORKLOAD) -> RunResult:
    """A finished run with the figures a verdict reads, the rest plausible filler."""
    applied = 10_000
    computed = round(applied / (1 - dropped_share))
    failures = round(failures_per_update * applied)
    data = {
        "workload": workload, "algorithm": algorithm, "threads": threads, "lr": lr,
        "batch_size": 16, "seed": seed, "target_loss": 0.001, "max_time": max_time,
        "max_updates": None, "status": "converged" if converged else "timeout",
        "wall_s": time if converged else max_time,
        "time_to_target_s": time if converged else None,
        "steps_to_target": applied if converged else None, "updates_applied": applied,
        "gradients_computed": computed, "gradients_dropped": computed - applied,
        "updates_per_s": applied / time, "per_thread_updates": [applied],
        "per_thread_gradients": [computed], "loss_trace": [[0.1, 10, 2.0], [time, applied, 0.5]],
        "staleness": {"count": applied, "mean": staleness, "p99": int(3 * staleness) + 1,
                      "max": int(10 * staleness) + 1, "histogram": {"0": applied // 2,
                                                                    "3": applied // 2}},
        "cas": ({"failures": failures, "total_attempts": applied + failures,
                 "failure_rate": failures / (applied + failures)}
                if algorithm.startswith("leashed") else None),
        "peak_param_vectors": int(live_vectors) + 1,
        "peak_param_bytes": (int(live_vectors) + 1) * VECTOR_BYTES,
        "live_param_vectors": {"mean": live_vectors, "max": int(live_vectors) + 1,
                               "samples": 3, "trace": [[0, 1], [0.5, 2], [time, 1]]},
        "mean_live_param_bytes": live_vectors * VECTOR_BYTES,
        "initial_loss": 2.3, "final_loss": 0.001, "test_loss": 0.1, "test_accuracy": 0.97,
        "compile_s": 0.0, "environment": {"cpu_affinity": 4},
    }
    return RunResult.from_dict(json.loads(json.dumps(data)))


def seeds(make, count: int = 5) -> list[RunResult]:
    """``make(seed, jitter)`` for each seed; jitter in [0, 0.04] varies the runs a little."""
    return [make(seed, 0.01 * seed) for seed in range(count)]


def context(cores: int) -> Context:
    return Context(cores, {WORKLOAD: LR})


def verdict(number: int, runs: list[RunResult], cores: int) -> str:
    return claims.get_claim(number).judge(runs, WORKLOAD, context(cores)).verdict


# -- claim 1 ---------------------------------------------------------------------------

def speed_runs(leashed_time: float, baseline_time: float, threads=(2, 4),
               count: int = 5) -> list[RunResult]:
    runs = []
    for m in threads:
        grows = 1 + 0.25 * (m > 2)  # the baseline's disadvantage widens with threads
        runs += seeds(lambda s, j: record(LEASHED, m, s, time=leashed_time + j), count)
        for baseline in (LOCK, HOGWILD):
            runs += seeds(lambda s, j, b=baseline: record(b, m, s,
                                                          time=baseline_time * grows + j), count)
    return runs


def test_claim_1_verdicts():
    assert verdict(1, speed_runs(1.0, 2.0), cores=4) == SUPPORTED
    assert verdict(1, speed_runs(2.0, 1.0), cores=4) == NOT_SUPPORTED
    # faster at 2 threads, but 2 cores cannot show the growth with threads
    judged = claims.get_claim(1).judge(speed_runs(1.0, 2.0, threads=(2,)), WORKLOAD, context(2))
    assert judged.verdict == NOT_TESTABLE
    assert ">= 4 cores" in judged.reason
    assert verdict(1, speed_runs(1.0, 2.0, count=3), cores=4) == NOT_TESTABLE


def test_claim_1_counts_an_unreached_target_at_the_time_limit():
    runs = speed_runs(1.0, 2.0)
    never = [record(LOCK, 2, 9, converged=False, max_time=7.0)]
    assert claims.time_to_epsilon(never[0]) == 7.0
    assert verdict(1, runs + never, cores=4) == SUPPORTED


# -- claim 2 ---------------------------------------------------------------------------

def stability_runs(leashed_converges_at_large_lr: bool, baselines_converge: bool,
                   lrs=(LR, 4 * LR)) -> list[RunResult]:
    runs = []
    for lr in lrs:
        large = lr > LR
        for label in (LEASHED, LOCK, HOGWILD):
            converges = not large or (leashed_converges_at_large_lr if label == LEASHED
                                      else baselines_converge)
            runs += seeds(lambda s, j, a=label, c=converges, x=lr: record(
                a, 2, s, lr=x, time=1.0 + 5 * j, converged=c))
    return runs


def test_claim_2_verdicts():
    assert verdict(2, stability_runs(True, False), cores=2) == SUPPORTED
    assert verdict(2, stability_runs(False, True), cores=2) == NOT_SUPPORTED
    assert verdict(2, stability_runs(True, False, lrs=(LR,)), cores=2) == NOT_TESTABLE


def test_claim_2_equal_success_is_decided_by_spread():
    runs = []
    for lr in (LR, 4 * LR):
        runs += seeds(lambda s, j, x=lr: record(LEASHED, 2, s, lr=x, time=1.0 + j))
        for label in (LOCK, HOGWILD):
            runs += seeds(lambda s, j, a=label, x=lr: record(a, 2, s, lr=x, time=1.0 + 25 * j))
    assert verdict(2, runs, cores=2) == SUPPORTED
    assert float(claims.relative_spread([1.0, 2.0, 3.0])) == pytest.approx(
        (2.5 - 1.5) / 2.0)


# -- claim 3 ---------------------------------------------------------------------------

def memory_runs(leashed_live: float, count: int = 5) -> list[RunResult]:
    runs = []
    for m in (2, 4):
        runs += seeds(lambda s, j: record(LEASHED, m, s, live_vectors=leashed_live + j), count)
        runs += seeds(lambda s, j: record(LOCK, m, s, live_vectors=1 + m), count)
    return runs


def test_claim_3_verdicts():
    assert verdict(3, memory_runs(2.0), cores=2) == SUPPORTED
    assert verdict(3, memory_runs(6.0), cores=2) == NOT_SUPPORTED
    assert verdict(3, memory_runs(2.0, count=3), cores=2) == NOT_TESTABLE


# -- claim 4 ---------------------------------------------------------------------------

def contention_runs(failures_at_4: float, threads=(2, 4)) -> list[RunResult]:
    runs = []
    for m in threads:
        failures = 0.01 if m == 2 else failures_at_4
        runs += seeds(lambda s, j: record(LEASHED, m, s, failures_per_update=failures + j / 100,
                                          staleness=1.5 + j))
        runs += seeds(lambda s, j: record("leashed:tp=0", m, s, failures_per_update=failures,
                                          dropped_share=0.02, staleness=0.8 + j))
    return runs


def test_claim_4_verdicts():
    assert verdict(4, contention_runs(0.015), cores=4) == SUPPORTED  # 1.5x for 2x threads
    assert verdict(4, contention_runs(0.05), cores=4) == NOT_SUPPORTED  # 5x for 2x threads
    judged = claims.get_claim(4).judge(contention_runs(0.015, threads=(2,)), WORKLOAD,
                                       context(2))
    assert judged.verdict == NOT_TESTABLE
    assert [part.verdict for part in judged.parts] == [NOT_TESTABLE, SUPPORTED]


# -- claim 5 ---------------------------------------------------------------------------

def staleness_runs(leashed_staleness: float) -> list[RunResult]:
    runs = seeds(lambda s, j: record(LEASHED, 2, s, staleness=leashed_staleness + j))
    runs += seeds(lambda s, j: record(LOCK, 2, s, staleness=1.0 + j))
    runs += seeds(lambda s, j: record(HOGWILD, 2, s, staleness=1.2 + j))
    return runs


def test_claim_5_verdicts():
    assert verdict(5, staleness_runs(1.0), cores=2) == SUPPORTED
    assert verdict(5, staleness_runs(2.0), cores=2) == NOT_SUPPORTED
    assert verdict(5, staleness_runs(1.0), cores=1) == NOT_TESTABLE  # no thread count >= 2 fits


def test_the_bootstrap_interval_is_seeded_and_covers_the_median_ratio():
    first = claims.bootstrap_interval([[2.0, 2.1, 2.2, 1.9, 2.05], [1.0, 1.1, 0.9, 1.05, 0.95]],
                                      claims.median_ratio)
    again = claims.bootstrap_interval([[2.0, 2.1, 2.2, 1.9, 2.05], [1.0, 1.1, 0.9, 1.05, 0.95]],
                                      claims.median_ratio)
    assert first == again
    point, low, high = first
    assert point == pytest.approx(2.05 / 1.0)
    assert 1.5 < low <= point <= high < 2.5


def test_the_live_vector_mean_weighs_each_count_by_how_long_it_lasted():
    sampler = LiveVectorSampler.empty()
    for seconds, count in ((0.0, 1), (1.0, 3), (1.5, 2)):
        sampler.sample(seconds, count)
    summary = sampler.summary(end_s=3.5)
    # 1 for 1 s, 3 for 0.5 s, 2 for 2 s: (1 + 1.5 + 4) / 3.5
    assert summary["mean"] == pytest.approx(6.5 / 3.5)
    assert summary["max"] == 3 and summary["samples"] == 3
    assert LiveVectorSampler.empty().summary(1.0) == {}


def test_quick_plans_fit_two_cores_and_share_runs_between_claims():
    plan = make_plan(claims.SCALES["quick"], claims.CLAIM_NUMBERS, [WORKLOAD], cores=2)
    cells = plan.cells[WORKLOAD]
    assert len({config.key() for config in cells}) == len(cells)
    assert {config.threads for config in cells} == {2, 4}
    # claims 1, 3 and 5 read the same runs at 2 threads and the default step size
    assert len([c for c in cells if c.algorithm == LEASHED and c.threads == 2
                and c.lr == LR]) == 5
    assert len(cells) <= 90  # a few seconds each: within 15 minutes on 2 cores
    order = [config.seed for config in cells]
    assert order == sorted(order)  # seed by seed: strategies interleaved under the same load


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
        assert parsed.figures[number] >= 1, f"claim {number} has no embedded figure"
        assert len(parsed.verdicts[number]) == 1 and parsed.verdicts[number][0] in VERDICTS
    assert parsed.external == []  # self-contained: nothing to fetch
    markdown = (tiny_folder / "report.md").read_text()
    for claim in CLAIMS:
        assert f"## Claim {claim.number}: {claim.title}" in markdown
        assert claim.rule in markdown
    for figure in (tiny_folder / "figures").iterdir():
        assert figure.read_bytes().startswith(b"\x89PNG")
        assert f"figures/{figure.name}" in markdown


def test_live_vector_samples_agree_with_what_each_strategy_holds(tiny_folder):
    runs = [RunResult.from_dict(json.loads(line))
            for line in (tiny_folder / "runs.jsonl").read_text().splitlines()]
    for run in runs:
        live = run.live_param_vectors
        assert live["samples"] >= 1
        if run.config.algorithm == LOCK:  # the shared vector and one copy per thread
            assert live["mean"] == pytest.approx(1 + run.config.threads)
        elif run.config.algorithm == HOGWILD:
            assert live["mean"] == pytest.approx(1)
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
    assert parse_report(copy).verdicts.keys() == {1, 2, 3, 4, 5}


def test_resume_does_exactly_the_missing_runs(tiny_folder, tiny_scale, capsys, tmp_path):
    copy = tmp_path / "resumed"
    shutil.copytree(tiny_folder, copy)
    lines = (copy / "runs.jsonl").read_text().splitlines(keepends=True)
    kept = lines[:-3]
    (copy / "runs.jsonl").write_text("".join(kept))
    code, _, err = run_cli(capsys, "reproduce", "--scale", "tiny", "--out", copy, "--resume")
    assert code == 0
    assert "3 of 13 runs to do" in err
    after = (copy / "runs.jsonl").read_text().splitlines(keepends=True)
    assert after[:len(kept)] == kept  # finished runs untouched
    keys = Counter(RunResult.from_dict(json.loads(line)).config.key() for line in after)
    planned = {c.key() for c in make_plan(TINY, claims.CLAIM_NUMBERS, [WORKLOAD], cores=json.loads(
        (copy / MANIFEST).read_text())["cores"]).cells[WORKLOAD]}
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
