"""The run plan (engine/plan.py): specs typed once, identity and labels from the plan alone,
records of earlier versions read and resumed, runs selected by typed fields."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from claim_records import record
from cli_helpers import in_process, read_runs

from asgdbench.engine import plan, runner
from asgdbench.engine.choice import CONSTANT, Choice, format_value, parse_step, run_label
from asgdbench.engine.run_result import RunConfig, RunResult
from asgdbench.errors import ConfigError
from asgdbench.plugins.step_rules import parse_step_spec
from asgdbench.plugins.strategies import parse_spec
from asgdbench.plugins.workloads import get_workload, load_workload
from asgdbench.study import grid
from asgdbench.study.claim_runs import LEASHED, LEASHED_TP, runs_of

HALVING = Path(__file__).parent / "plugins" / "halving.py"
BASE = dict(workload="probe", threads=2, lr=0.1, batch_size=1, seed=0, target_loss=None,
            max_time=1.0, max_updates=None)


@pytest.mark.parametrize("text", ["leashed:tp=inf", "leashed:tp=0", "lock", "fleet:tau_th=-0",
                                  "tail:amplitude=0.5:warmup_from=10:warmup_to=15:max_staleness=199"])
def test_a_choice_reads_its_own_label_without_the_registry(text):
    choice = Choice.from_label(text)
    assert choice.label == text == str(choice)
    assert Choice.from_label(choice.label) == choice


def test_a_choice_from_a_parsed_spec_has_the_parsers_label():
    for text in ("leashed", "leashed:tp=1", "sync", "hogwild-per-step-copy"):
        spec = parse_spec(text)
        assert Choice.of(spec).label == spec.label
    for text in ("tail", "inverse", "fleet:tau_th=3", "constant"):
        spec = parse_step_spec(text)
        assert Choice.of(spec).label == spec.label


def test_choices_are_equal_as_their_canonical_specs_are():
    assert Choice("leashed", (("tp", 0),)) == Choice("leashed", (("tp", 0.0),))
    assert Choice("leashed", (("tp", math.inf),)) == Choice.from_label("leashed:tp=inf")
    assert Choice("fleet", (("tau_th", 0.0),)) != Choice("fleet", (("tau_th", -0.0),))
    assert len({Choice.from_label("leashed:tp=1"), Choice("leashed", (("tp", 1),))}) == 1
    assert LEASHED.is_("leashed", tp=math.inf) and not LEASHED.is_("leashed", tp=0)
    assert format_value(True) == "true" and format_value(2.5) == "2.5"


def test_a_choice_binds_to_its_plugin_with_typed_values_and_refuses_unknown_parameters():
    step = parse_step(Choice.from_label("fleet:tau_th=3"))  # read from a file: 3 is an int
    assert step.kwargs == {"tau_th": 3.0} and isinstance(step.kwargs["tau_th"], float)
    assert parse_step(Choice("tail")).label == parse_step_spec("tail").label  # defaults fill in
    with pytest.raises(ConfigError, match="no parameter 'bogus'"):
        parse_step(Choice("tail", (("bogus", 1),)))


def test_the_label_rule_every_parameter_shown_constant_left_out():
    assert run_label(LEASHED, CONSTANT) == "leashed:tp=inf"
    assert run_label(LEASHED, Choice("inverse")) == "leashed:tp=inf+inverse"
    config = RunConfig(**BASE, strategy="lock", step=parse_step_spec("tail").label)
    assert config.label == "lock+tail:amplitude=1:warmup_from=10:warmup_to=15:max_staleness=199"


def test_records_are_written_with_strategy_and_old_ones_with_algorithm_still_read():
    new = record("leashed:tp=inf", 2, 0)
    written = new.to_dict()
    assert written["strategy"] == "leashed:tp=inf" and "algorithm" not in written
    assert written["step"] == "constant"
    old = dict(written)
    old["algorithm"] = old.pop("strategy")
    del old["step"]  # from before step rules
    read = RunResult.from_dict(old)
    assert read.config == new.config and read.config.key() == new.config.key()
    assert read.config.strategy == LEASHED and read.config.step == CONSTANT
    assert json.loads(json.dumps(written)) == read.to_dict()


def test_a_folder_written_by_the_previous_version_resumes(tmp_path, capsys, monkeypatch):
    """Its runs.jsonl holds ``algorithm``: a resumed compare counts every run as done."""
    out = tmp_path / "old"
    out.mkdir()
    cells = grid.expand(get_workload("mlp-digits"), grid.parse_specs(["seq", "leashed:tp=inf"])[0],
                        [1], None, 2)
    lines = []
    for config in cells:
        data = record(config.strategy, 1, config.seed).to_dict() | config.to_record()
        data["algorithm"] = data.pop("strategy")
        lines.append(json.dumps(data))
    (out / "runs.jsonl").write_text("\n".join(lines) + "\n")

    def no_run(workload, config):
        raise AssertionError(f"{config.label} seed {config.seed} was finished already")

    monkeypatch.setattr(grid, "run_cell", no_run)
    done = in_process(capsys, "compare", "--strategies", "seq,leashed:tp=inf", "--threads", "1",
                      "--repeats", "2", "--resume", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "0 of 4 runs to do" in done.stderr
    assert [run["algorithm"] for run in read_runs(out)] == [c.strategy.label for c in cells]


def test_report_labels_do_not_depend_on_the_plugins_loaded(tmp_path):
    """A run with a plugin's step rule reads the same with and without ``--plugin``."""
    out = tmp_path / "halving"
    out.mkdir()
    runs = [RunResult.from_dict(record("lock", 2, seed).to_dict() | {"step": "halving:limit=4"})
            for seed in range(2)]
    (out / "runs.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in runs))

    def report(*plugin: str) -> str:
        done = subprocess.run([sys.executable, "-m", "asgdbench", *plugin, "report", str(out)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    without, with_plugin = report(), report("--plugin", str(HALVING))
    assert "lock+halving:limit=4" in without
    assert without == with_plugin


def test_claims_select_runs_by_strategy_fields_and_the_constant_step():
    runs = [record(label, 2, seed).to_dict() | {"step": step}
            for label in ("leashed:tp=inf", "leashed:tp=0") for seed in range(3)
            for step in ("constant", "inverse")]
    results = [RunResult.from_dict(run) for run in runs]
    chosen = runs_of(results, "mlp-digits", LEASHED, 2, None)
    assert len(chosen) == 3
    assert all(r.config.strategy.get("tp") == math.inf and r.config.step == CONSTANT
               for r in chosen)
    assert len(runs_of(results, "mlp-digits", LEASHED_TP[0], 2, None)) == 3


def test_a_grid_cell_runs_as_planned_without_being_configured_again(monkeypatch):
    """``configure`` makes a plan once (grid.expand); running its cell binds the typed choices."""
    [cell] = grid.expand(get_workload("probe"), grid.parse_specs(["lock"])[0], [2], None, 1,
                         max_updates=50, target_loss=None, max_time=None, dtype="float64")

    def configured_again(*args, **kwargs):
        raise AssertionError("configure ran again")

    for module in (plan, runner, grid):  # wherever a name for it is bound
        monkeypatch.setattr(module, "configure", configured_again)
    result = grid.run_cell(load_workload("probe", dtype="float64"), cell)
    assert result.config == cell and result.updates_applied == 50
    with pytest.raises(ConfigError, match="planned for probe in float64"):
        grid.run_cell(load_workload("probe", dtype="float32"), cell)
