"""Speed of the convolutional gradient step, as ratios against baselines measured in the same run.

    python benchmarks/scripts/cnn_speed.py [--quick] [--layers] [--clock wall|thread] [--json OUT.json]
                                           [--cpp-framework PATH]

One step is a forward + backward pass of a minibatch (loss and full gradient), one thread,
one BLAS thread, the minibatch already in memory. Contenders, interleaved so that a noisy
machine hurts all alike (median of the repeats):

- ``asgdbench``: ``workloads.network.gradient``, the kernel the worker loop calls;
- ``numpy``: the same network in NumPy + BLAS, batched im2col (written below, checked
  against asgdbench's loss and gradient before anything is timed);
- ``torch``: the same network in PyTorch on the CPU with one thread, only if PyTorch is
  already importable (``pip install 'asgdbench[torch]'``); never installed by this script.

Rows: ``cnn`` at batch 16, 128 and 512 and ``lenet`` (28x28x1) at batch 128, float32 and
float64. The issue's targets are ratios: asgdbench <= 0.5x PyTorch (float32), and <= 0.35x
the authors' C++ framework (float64, 5.8 ms for cnn at batch 128 on their machine).
``--cpp-framework PATH`` (a checkout of dcs-chalmers/shared-memory-sgd, kept outside this repo)
adds that framework's float64 step on this machine as a ``cpp`` contender, interleaved with the
others (see ``cpp_reference.py``); without it that framework is not run here.
``--layers`` also times each conv layer both ways, direct loops and im2col + BLAS, which is
how ``workloads.layers.prefers_gemm`` was chosen.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any, Callable

import numpy as np
from cpp_reference import CppStepper, add_cli_options, build_from_cli
from numpy.lib.stride_tricks import sliding_window_view
from perf_targets import interleaved_medians
from tabulate import tabulate

from asgdbench.engine.machine import environment
from asgdbench.engine.runner import single_threaded_blas
from asgdbench.workloads import layers as L
from asgdbench.workloads.catalog import CNN, LENET
from asgdbench.workloads.network import Conv, Dense, MaxPool, Network, ReLU, gradient

CASES = [("cnn", CNN, (1, 28, 28), 16), ("cnn", CNN, (1, 28, 28), 128),
         ("cnn", CNN, (1, 28, 28), 512), ("lenet", LENET, (1, 28, 28), 128)]
QUICK_CASES = [("cnn", CNN, (1, 28, 28), 128), ("lenet", LENET, (1, 28, 28), 128)]
LAYER_SHAPES = {  # (in_c, height, width, out_c, k) of every conv layer of the catalogue
    "cnn conv1": (1, 28, 28, 4, 3), "cnn conv2": (4, 13, 13, 8, 3),
    "lenet conv1": (1, 28, 28, 6, 5), "lenet conv2": (6, 12, 12, 16, 5),
    "lenet-cifar10 conv1": (3, 32, 32, 6, 5), "lenet-cifar10 conv2": (6, 14, 14, 16, 5),
}
N_SAMPLES = 4096


# -- the NumPy + BLAS reference --------------------------------------------------------------

class NumpyNetwork:
    """A :class:`Network`'s layer list in NumPy: im2col by strided views, products by BLAS."""

    def __init__(self, model: Network) -> None:
        self.model = model

    def loss_and_gradient(self, params: np.ndarray, X: np.ndarray,
                          y: np.ndarray) -> tuple[float, np.ndarray]:
        h = X.reshape(X.shape[0], *self.model.input_shape)
        grads: list[np.ndarray] = []
        tape: list[Callable[[np.ndarray], np.ndarray]] = []
        at = 0
        for layer in self.model.layers:
            if isinstance(layer, Conv):
                h, back, at = self._conv(h, params, at, layer, grads)
            elif isinstance(layer, MaxPool):
                h, back = self._pool(h)
            elif isinstance(layer, ReLU):
                mask = h > 0
                h = h * mask
                back = (lambda m: lambda d: d * m)(mask)
            else:
                h, back, at = self._dense(h, params, at, layer, grads)
            tape.append(back)
        shifted = h - h.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        batch = h.shape[0]
        loss = -log_p[np.arange(batch), y].mean()
        d = np.exp(log_p)
        d[np.arange(batch), y] -= 1
        d /= batch
        for back in reversed(tape):
            d = back(d)
        flat = np.empty_like(params)
        for start, values in grads:
            flat[start:start + values.size] = values.ravel()
        return float(loss), flat

    @staticmethod
    def _conv(h, params, at, layer, grads):
        batch, channels, height, width = h.shape
        k, filters = layer.kernel, layer.channels
        taps = channels * k * k
        w = params[at:at + filters * taps].reshape(filters, taps)
        b = params[at + filters * taps:at + filters * taps + filters]
        windows = sliding_window_view(h, (k, k), axis=(2, 3))  # B, C, Ho, Wo, k, k
        out_h, out_w = windows.shape[2], windows.shape[3]
        cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(batch * out_h * out_w, taps)
        out = (cols @ w.T + b).reshape(batch, out_h, out_w, filters).transpose(0, 3, 1, 2)
        slot = len(grads)
        grads += [(at, None), (at + filters * taps, None)]

        def back(d):
            d2 = d.transpose(0, 2, 3, 1).reshape(-1, filters)
            grads[slot] = (at, d2.T @ cols)
            grads[slot + 1] = (at + filters * taps, d2.sum(axis=0))
            d_cols = (d2 @ w).reshape(batch, out_h, out_w, channels, k, k)
            d_x = np.zeros_like(h)
            for di in range(k):
                for dj in range(k):
                    d_x[:, :, di:di + out_h, dj:dj + out_w] += d_cols[..., di, dj].transpose(0, 3, 1, 2)
            return d_x

        return np.ascontiguousarray(out), back, at + filters * taps + filters

    @staticmethod
    def _pool(h):
        batch, channels, height, width = h.shape
        out_h, out_w = height // 2, width // 2
        blocks = (h[:, :, :2 * out_h, :2 * out_w].reshape(batch, channels, out_h, 2, out_w, 2)
                  .transpose(0, 1, 2, 4, 3, 5).reshape(batch, channels, out_h, out_w, 4))
        winner = blocks.argmax(axis=-1)
        out = np.take_along_axis(blocks, winner[..., None], axis=-1)[..., 0]

        def back(d):
            d_blocks = np.zeros(blocks.shape, dtype=d.dtype)
            np.put_along_axis(d_blocks, winner[..., None], d[..., None], axis=-1)
            d_x = np.zeros_like(h)
            d_x[:, :, :2 * out_h, :2 * out_w] = (d_blocks.reshape(batch, channels, out_h, out_w, 2, 2)
                                                 .transpose(0, 1, 2, 4, 3, 5)
                                                 .reshape(batch, channels, 2 * out_h, 2 * out_w))
            return d_x

        return out, back

    @staticmethod
    def _dense(h, params, at, layer, grads):
        shape = h.shape
        x = h.reshape(shape[0], -1)
        fan_in = x.shape[1]
        w = params[at:at + fan_in * layer.units].reshape(fan_in, layer.units)
        b = params[at + fan_in * layer.units:at + fan_in * layer.units + layer.units]
        slot = len(grads)
        grads += [(at, None), (at + w.size, None)]

        def back(d):
            grads[slot] = (at, x.T @ d)
            grads[slot + 1] = (at + w.size, d.sum(axis=0))
            return (d @ w.T).reshape(shape)

        return x @ w + b, back, at + w.size + layer.units


# -- PyTorch, if it is there ---------------------------------------------------------------

def torch_step(model: Network, params: np.ndarray, X: np.ndarray, y: np.ndarray
               ) -> Callable[[], Any] | None:
    """A closure running one forward + backward in PyTorch (one thread), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    dtype = torch.float32 if model.dtype == np.float32 else torch.float64
    modules, channels, flattened = [], model.input_shape[0], False
    for layer in model.layers:
        if isinstance(layer, Conv):
            modules.append(torch.nn.Conv2d(channels, layer.channels, layer.kernel))
            channels = layer.channels
        elif isinstance(layer, MaxPool):
            modules.append(torch.nn.MaxPool2d(2))
        elif isinstance(layer, ReLU):
            modules.append(torch.nn.ReLU())
        elif isinstance(layer, Dense):
            if not flattened:  # (C, H, W) -> C*H*W, the order asgdbench's dense layers read
                modules.append(torch.nn.Flatten())
                flattened = True
            modules.append(torch.nn.LazyLinear(layer.units))
    net = torch.nn.Sequential(*modules).to(dtype)
    inputs = torch.from_numpy(X.reshape(X.shape[0], *model.input_shape)).to(dtype)
    labels = torch.from_numpy(y)
    net(inputs)  # materializes the lazy layers

    def step() -> float:
        net.zero_grad(set_to_none=False)
        loss = torch.nn.functional.cross_entropy(net(inputs), labels)
        loss.backward()
        return float(loss.detach())

    return step


# -- the measurements ----------------------------------------------------------------------

# "thread": CPU seconds of the calling thread. On a machine that other jobs load,
# time-slicing inflates wall times unevenly (PyTorch's many short calls more than one long
# kernel), while every contender here computes on the calling thread.
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}

def step_case(name: str, layers, input_shape, batch: int, dtype: str, repeats: int,
              clock: str = "wall", cpp: str | None = None) -> dict[str, Any]:
    model = Network(input_shape, layers, np.dtype(dtype))
    rng = np.random.default_rng(0)
    X = rng.random((N_SAMPLES, model.n_inputs)).astype(dtype)
    y = rng.integers(0, 10, N_SAMPLES)
    rows = rng.choice(N_SAMPLES, batch, replace=False)
    params = model.init_params(0)
    grad = np.empty_like(params)
    work = model.make_workspace(batch)
    data = (X, y, model.table)
    reference = NumpyNetwork(model)
    Xb, yb = X[rows], y[rows]

    loss = gradient(params, data, rows, work, grad)  # compiles; then the reference must agree
    ref_loss, ref_grad = reference.loss_and_gradient(params, Xb, yb)
    tolerance = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(loss, ref_loss, rtol=tolerance)
    np.testing.assert_allclose(grad, ref_grad, rtol=tolerance * 10,
                               atol=tolerance * np.abs(ref_grad).max())
    contenders = {"asgdbench": lambda: gradient(params, data, rows, work, grad),
                  "numpy": lambda: reference.loss_and_gradient(params, Xb, yb)}
    torch = torch_step(model, params, Xb, yb)
    if torch is not None:
        torch()
        contenders["torch"] = torch
    # The authors' C++ framework (MiniDNN, Scalar = double): one step per round in a driver
    # process kept open; its figure is the driver's own timing, not the round trip's.
    with (CppStepper(cpp, name, batch) if cpp and dtype == "float64"
          else contextlib.nullcontext()) as stepper:
        if stepper is not None:
            stepper.run(3, record=False)  # warm-up
            contenders["cpp"] = stepper.run
        seconds = interleaved_medians(contenders, repeats, CLOCKS[clock])
        if stepper is not None:
            seconds["cpp"] = 1e-3 * stepper.median_ms("grad_cpu_ms" if clock == "thread"
                                                       else "grad_ms")
    row = {"network": name, "batch": batch, "dtype": dtype,
           **{f"{who} [ms]": 1e3 * s for who, s in seconds.items()},
           "vs numpy": seconds["asgdbench"] / seconds["numpy"]}
    if "torch" in seconds:
        row["vs torch"] = seconds["asgdbench"] / seconds["torch"]
    if "cpp" in seconds:
        row["vs cpp"] = seconds["asgdbench"] / seconds["cpp"]
    return row


def layer_case(name: str, shape: tuple[int, ...], batch: int, dtype: str, repeats: int,
               clock: str = "wall") -> dict[str, Any]:
    """One conv layer's forward and backward, direct loops against im2col + BLAS."""
    in_c, height, width, out_c, k = shape
    rng = np.random.default_rng(0)
    out_size = out_c * (height - k + 1) * (width - k + 1)
    x = rng.random(batch * in_c * height * width).astype(dtype)
    w, b = rng.normal(size=out_c * in_c * k * k).astype(dtype), np.zeros(out_c, dtype)
    d_out = rng.normal(size=batch * out_size).astype(dtype)
    out, d_w, d_b, d_x = (np.empty(batch * out_size, dtype), np.empty_like(w), np.empty_like(b),
                          np.empty_like(x))
    wide = np.empty(height * width, dtype)
    scratch = np.empty(L.gemm_scratch_size(in_c, height, width, out_c, k), dtype)
    args = (batch, in_c, height, width, out_c, k)
    contenders = {
        "direct fwd": lambda: L.conv_forward(x, w, b, out, wide, *args),
        "gemm fwd": lambda: L.conv_forward_gemm(x, w, b, out, scratch, *args),
        "direct bwd": lambda: L.conv_backward(x, w, d_out, d_w, d_b, d_x, wide, *args, True),
        "gemm bwd": lambda: L.conv_backward_gemm(x, w, d_out, d_w, d_b, d_x, scratch, *args, True),
    }
    for fn in contenders.values():
        fn()
    seconds = interleaved_medians(contenders, repeats, CLOCKS[clock])
    return {"layer": name, "batch": batch, "dtype": dtype,
            **{f"{who} [ms]": 1e3 * s for who, s in seconds.items()},
            "gemm/direct fwd": seconds["gemm fwd"] / seconds["direct fwd"],
            "gemm/direct bwd": seconds["gemm bwd"] / seconds["direct bwd"],
            "uses": "gemm" if L.prefers_gemm(in_c, k, out_c) else "direct"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and repeats")
    parser.add_argument("--layers", action="store_true", help="also time each conv layer both ways")
    parser.add_argument("--json", metavar="OUT.json", help="also write the figures as JSON")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall time (default), or the thread's CPU time on a loaded machine")
    add_cli_options(parser, "its float64 step")
    args = parser.parse_args()
    repeats = 7 if args.quick else 25
    report: dict[str, Any] = {"environment": environment(), "clock": args.clock}
    cpp, cpp_flags = build_from_cli(parser, args)
    if cpp:
        report["cpp"] = {"binary": cpp, "flags": cpp_flags}
    with single_threaded_blas():
        steps = [step_case(name, layers, shape, batch, dtype, repeats, args.clock, cpp)
                 for name, layers, shape, batch in (QUICK_CASES if args.quick else CASES)
                 for dtype in ("float32", "float64")]
        print(f"Gradient step (forward + backward), one thread, {args.clock} clock; "
              "ratios: asgdbench time / baseline")
        print(tabulate(steps, headers="keys", floatfmt=".3g", tablefmt="github"))
        if not any("torch [ms]" in row for row in steps):
            print("(PyTorch is not importable here: no torch column; pip install 'asgdbench[torch]')")
        if cpp:
            print(f"(cpp: the authors' MiniDNN framework, forward + backprop, Scalar = double, "
                  f"built with {report['cpp']['flags']})")
        report["steps"] = steps
        if args.layers:
            per_layer = [layer_case(name, shape, batch, "float32", repeats, args.clock)
                         for name, shape in LAYER_SHAPES.items() for batch in (16, 128)]
            print("\nConv layers, float32: direct loops vs im2col + BLAS")
            print(tabulate(per_layer, headers="keys", floatfmt=".3g", tablefmt="github"))
            report["layers"] = per_layer
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)


if __name__ == "__main__":
    sys.exit(main())
