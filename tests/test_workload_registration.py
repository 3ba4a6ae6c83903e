"""A misconfigured network workload is one line at registration, before any data is loaded;
``architecture=`` only names a network, so it may be left out."""

from __future__ import annotations

import pytest

from asgdbench.plugins.workloads import WORKLOADS, load_workload

NETWORK_PLUGIN = '''
"""A network workload from a plugin file."""
from functools import partial

from asgdbench import Defaults, WorkloadSpec, network, register_workload
from asgdbench.workloads.catalog import build_network

Conv, Dense, MaxPool, ReLU = network.Conv, network.Dense, network.MaxPool, network.ReLU

register_workload(WorkloadSpec(
    name=NAME, summary="a network", group="cnn",
    build=partial(build_network, OPTIONS),
    defaults=Defaults(lr=0.05, batch_size=16, target_loss=0.5, max_time=30.0),
))
'''


def network_plugin(tmp_path, name: str, options: str):
    path = tmp_path / f"network_{name.replace('-', '_')}.py"
    path.write_text(NETWORK_PLUGIN.replace("NAME", repr(name)).replace("OPTIONS", options))
    return path


@pytest.mark.parametrize("name, options, fragments", [
    ("cnn-digits", "dataset='digits', layers=(Conv(4, 3), ReLU(), MaxPool(), Dense(10))",
     ["'digits' has no image shape", "conv and pool layers need an image data set"]),
    ("pool-synthetic", "dataset='synthetic', layers=(MaxPool(), Dense(10))",
     ["'synthetic' has no image shape"]),
    ("huge-kernel", "dataset='mnist', layers=(Conv(4, 29), Dense(10))",
     ["'mnist' images (1x28x28)", "layer 0: a 29x29 kernel does not fit a 28x28 input"]),
    ("no-logits", "dataset='mnist', layers=(Conv(4, 3), ReLU())",
     ["ends with a Dense layer"]),
    ("no-such-data", "dataset='imagenet', layers=(Dense(10),)",
     ["unknown data set 'imagenet'", "mnist"]),
    ("typo", "dataset='mnist', layers=(Dense(10),), archtecture='x'",
     ["no option 'archtecture'"]),
])
def test_a_misconfigured_network_is_one_line_naming_the_workload_and_exit_2(
        tmp_path, capsys, name, options, fragments):
    from asgdbench.study.cli import main

    try:
        code = main(["--plugin", str(network_plugin(tmp_path, name, options)), "list"])
    finally:
        if name in WORKLOADS.available():
            WORKLOADS.forget(name)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"workload {name!r}" in err and "PluginError" not in err
    for fragment in fragments:
        assert fragment in err


def test_the_error_comes_from_register_workload_itself():
    """Not only through the command line: a script calling register_workload gets it too."""
    from functools import partial

    from asgdbench import Defaults, WorkloadSpec, register_workload
    from asgdbench.errors import PluginError
    from asgdbench.workloads.catalog import build_network
    from asgdbench.workloads.network import Conv, Dense

    spec = WorkloadSpec(name="cnn-on-digits", summary="x",
                        build=partial(build_network, dataset="digits", layers=(Conv(2, 3),
                                                                              Dense(10))),
                        defaults=Defaults(lr=0.1, batch_size=4, target_loss=None, max_time=5.0))
    with pytest.raises(PluginError, match="workload 'cnn-on-digits'.*no image shape"):
        register_workload(spec)
    assert "cnn-on-digits" not in WORKLOADS.available()


def test_architecture_is_optional_and_derived_from_the_layers(tmp_path):
    """A dense network on digits, named by nobody: it builds, and its description names the
    layers; a network that does name its architecture keeps the name."""
    from asgdbench.plugins.files import load_plugin_file

    plain = network_plugin(tmp_path, "dense-digits",
                           "dataset='digits', layers=(Dense(32), ReLU(), Dense(10))")
    named = network_plugin(tmp_path, "named-digits",
                           "dataset='digits', layers=(Dense(10),), architecture='softmax'")
    try:
        load_plugin_file(plain)
        load_plugin_file(named)
        workload = load_workload("dense-digits", dtype="float64")
        assert workload.description["model"] == "dense32-relu-dense10"
        assert workload.description["input_shape"] == [64, 1, 1]
        assert workload.n_params == 64 * 32 + 32 + 32 * 10 + 10
        assert load_workload("named-digits").description["model"] == "softmax"
    finally:
        for name in ("dense-digits", "named-digits"):
            if name in WORKLOADS.available():
                WORKLOADS.forget(name)


def test_every_built_in_network_passes_its_own_registration_check():
    """The catalogue's options are held to the same check (they register through it)."""
    from asgdbench.plugins.workloads import available_workloads, options_problem

    specs = available_workloads()
    assert {"cnn-mnist", "lenet-cifar10", "mlp-digits"} <= set(specs)
    assert all(options_problem(spec.build) is None for spec in specs.values())


def test_image_shapes_known_before_loading_match_the_loaded_data():
    from asgdbench.workloads import datasets

    assert set(datasets.IMAGE_SHAPES) == set(datasets.DATASETS)
    assert datasets.load_digits().image_shape == datasets.IMAGE_SHAPES["digits"]
    assert datasets.load_synthetic(n_samples=100).image_shape == datasets.IMAGE_SHAPES["synthetic"]
