"""A feed-forward network described as a layer list, trained on one flat parameter vector.

An architecture is data (:mod:`.architecture`, whose layer types this module
shows too): an input shape and a tuple of :class:`Conv`, :class:`MaxPool`,
:class:`ReLU` and :class:`Dense` (the last layer's outputs are the logits of a
softmax cross-entropy). :class:`Network` turns the list into an
int64 *layer table*, one row of shapes and offsets per layer, which the
``@njit(nogil=True)`` :func:`gradient` walks forward and back with the kernels
of :mod:`.layers`. Nothing is allocated per step: every buffer lives in the
thread's workspace.

Parameter layout, per layer in order: conv weights ``(out_c, in_c, k, k)`` then
bias ``(out_c,)``; dense weights ``(fan_in, fan_out)`` then bias ``(fan_out,)``.
A dense layer reads its input flattened in ``(C, H, W)`` order.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np
from numba import njit

from asgdbench.workloads import layers as L
from asgdbench.workloads.architecture import (
    Conv,
    Dense,
    Layer,
    MaxPool,
    ReLU,
    architecture_name,
    layer_shapes,
    mlp_layers,
    spatial,
)

__all__ = ["Conv", "Dense", "Layer", "MaxPool", "Network", "ReLU", "architecture_name",
           "evaluate_kernel", "gradient", "layer_shapes", "mlp_layers", "spatial"]


# layer kinds, and the columns of the layer table
CONV, POOL, RELU, DENSE = range(4)
(KIND, IN_C, IN_H, IN_W, OUT_C, OUT_H, OUT_W, KERNEL, PARAMS_AT, N_WEIGHTS, IN_AT, OUT_AT,
 ARGMAX_AT, BY_GEMM, COLUMNS_AT) = range(15)
TABLE_COLUMNS = 15
FROM_INPUT = -1  # IN_AT of the first layer: it reads the gathered minibatch


@njit(nogil=True, cache=True)
def _gather(X, y, rows, xb, yb):
    width = X.shape[1]
    for r in range(rows.shape[0]):
        src = rows[r]
        for q in range(width):
            xb[r * width + q] = X[src, q]
        yb[r] = y[src]


@njit(nogil=True, cache=True)
def _size(table, layer, side):
    """Values per sample of a layer's input (side 0) or output (side 1)."""
    c = IN_C if side == 0 else OUT_C
    return table[layer, c] * table[layer, c + 1] * table[layer, c + 2]


@njit(nogil=True, cache=True)
def _input_of(table, layer, xb, acts, batch):
    n = batch * _size(table, layer, 0)
    at = table[layer, IN_AT]
    if at == FROM_INPUT:
        return xb[:n]
    return acts[batch * at:batch * at + n]


@njit(nogil=True, cache=True)
def _output_of(table, layer, acts, batch):
    at = batch * table[layer, OUT_AT]
    return acts[at:at + batch * _size(table, layer, 1)]


@njit(nogil=True, cache=True)
def _in_place_relu(table, layer):
    """Whether ``layer`` exists and is a ReLU that overwrites its input."""
    return (0 <= layer < table.shape[0] and table[layer, KIND] == RELU
            and table[layer, IN_AT] == table[layer, OUT_AT])


@njit(nogil=True, cache=True)
def _kept_columns(table, layer, kept, batch):
    """An im2col + BLAS conv layer's share of ``kept`` (empty when ``kept`` is)."""
    row = table[layer]
    at = batch * row[COLUMNS_AT]
    return kept[at:at + batch * L.kept_columns_size(row[IN_C], row[IN_H], row[IN_W], row[KERNEL])]


@njit(nogil=True, cache=True)
def forward(params, table, xb, acts, argmax, scratch, batch, kept):
    """Run every layer on the ``batch`` samples in ``xb``; returns the logits (batch x classes).

    A ReLU right after a conv or dense layer is fused into that layer's output pass. An
    im2col + BLAS conv layer leaves its column matrices in ``kept`` for :func:`backward`
    (pass an empty array to keep nothing, as evaluation does).
    """
    fused = False
    for layer in range(table.shape[0]):
        row = table[layer]
        relu_next = _in_place_relu(table, layer + 1)
        x = _input_of(table, layer, xb, acts, batch)
        out = _output_of(table, layer, acts, batch)
        w_at, n_w = row[PARAMS_AT], row[N_WEIGHTS]
        kind = row[KIND]
        if kind == CONV and row[BY_GEMM]:
            L.conv_forward_gemm(x, params[w_at:w_at + n_w],
                                params[w_at + n_w:w_at + n_w + row[OUT_C]], out, scratch, batch,
                                row[IN_C], row[IN_H], row[IN_W], row[OUT_C], row[KERNEL], relu_next,
                                _kept_columns(table, layer, kept, batch))
        elif kind == CONV:
            L.conv_forward(x, params[w_at:w_at + n_w], params[w_at + n_w:w_at + n_w + row[OUT_C]],
                           out, scratch, batch, row[IN_C], row[IN_H], row[IN_W], row[OUT_C],
                           row[KERNEL], relu_next)
        elif kind == POOL:
            at = batch * row[ARGMAX_AT]
            L.maxpool_forward(x, out, argmax[at:at + out.shape[0]], batch, row[IN_C], row[IN_H],
                              row[IN_W])
        elif kind == RELU:
            if fused:  # already applied by the layer before
                fused = False
                continue
            if row[IN_AT] != row[OUT_AT]:  # only a network that starts with a ReLU
                out[:] = x
            L.relu_forward(out, out.shape[0])
        else:
            fan_in, fan_out = _size(table, layer, 0), row[OUT_C]
            L.dense_forward(x, params[w_at:w_at + n_w], params[w_at + n_w:w_at + n_w + fan_out],
                            out, scratch, batch, fan_in, fan_out, relu_next)
        fused = relu_next and kind != POOL
    last = table.shape[0] - 1
    return _output_of(table, last, acts, batch).reshape((batch, table[last, OUT_C]))


@njit(nogil=True, cache=True)
def backward(params, table, xb, acts, argmax, scratch, deltas, batch, grad, kept):
    """Backpropagate ``deltas[0]`` (d loss / d logits) through every layer into ``grad``.

    ``kept`` is the buffer :func:`forward` filled for this same minibatch.

    A max-pool that reads a ReLU's output applies that ReLU's backward while it routes the
    gradient (only winners that are positive get one), so the ReLU's map is not passed over.
    """
    current = 0
    fused = False
    for layer in range(table.shape[0] - 1, -1, -1):
        row = table[layer]
        kind = row[KIND]
        n_in, n_out = batch * _size(table, layer, 0), batch * _size(table, layer, 1)
        d_out = deltas[current, :n_out]
        d_x = deltas[1 - current, :n_in]
        need_d_x = layer > 0
        x = _input_of(table, layer, xb, acts, batch)
        w_at, n_w = row[PARAMS_AT], row[N_WEIGHTS]
        b_at = w_at + n_w
        if kind == RELU:
            if not fused:
                L.relu_backward(_output_of(table, layer, acts, batch), d_out, n_out)
            fused = False
            continue  # in place: the delta stays in the same buffer
        if kind == CONV and row[BY_GEMM]:
            L.conv_backward_gemm(x, params[w_at:b_at], d_out, grad[w_at:b_at],
                                 grad[b_at:b_at + row[OUT_C]], d_x, scratch, batch, row[IN_C],
                                 row[IN_H], row[IN_W], row[OUT_C], row[KERNEL], need_d_x,
                                 _kept_columns(table, layer, kept, batch))
        elif kind == CONV:
            L.conv_backward(x, params[w_at:b_at], d_out, grad[w_at:b_at], grad[b_at:b_at + row[OUT_C]],
                            d_x, scratch, batch, row[IN_C], row[IN_H], row[IN_W], row[OUT_C],
                            row[KERNEL], need_d_x)
        elif kind == POOL:
            at = batch * row[ARGMAX_AT]
            if _in_place_relu(table, layer - 1):
                L.maxpool_backward(d_out, argmax[at:at + n_out], d_x, n_out, n_in, x)
                fused = True
            else:
                L.maxpool_backward(d_out, argmax[at:at + n_out], d_x, n_out, n_in)
        else:
            fan_in = _size(table, layer, 0)
            L.dense_backward(x, params[w_at:b_at], d_out, grad[w_at:b_at],
                             grad[b_at:b_at + row[OUT_C]], d_x, scratch, batch, fan_in, row[OUT_C],
                             need_d_x)
        current = 1 - current


@njit(nogil=True, cache=True)
def gradient(params, data, rows, work, grad):
    """Minibatch loss at ``params``; writes its gradient into ``grad``.

    ``data`` is ``(X, y, table)``: samples as rows, labels and the layer table;
    ``work`` is the thread's scratch from :meth:`Network.make_workspace`.
    """
    X, y, table = data
    xb, yb, acts, argmax, scratch, deltas, kept = work
    batch = rows.shape[0]
    _gather(X, y, rows, xb, yb)
    logits = forward(params, table, xb, acts, argmax, scratch, batch, kept)
    n_classes = logits.shape[1]
    loss = L.softmax_cross_entropy(logits, yb[:batch],
                                   deltas[0, :batch * n_classes].reshape((batch, n_classes)))
    backward(params, table, xb, acts, argmax, scratch, deltas, batch, grad, kept)
    return loss


@njit(nogil=True, cache=True)
def evaluate_kernel(params, X, y, table, xb, acts, argmax, scratch, kept):
    """Mean cross-entropy and accuracy over all of ``X``, a chunk of rows at a time (``kept``
    empty: evaluation keeps no im2col columns)."""
    width = X.shape[1]
    chunk = xb.shape[0] // width
    total = 0.0
    correct = 0
    for start in range(0, X.shape[0], chunk):
        n = min(chunk, X.shape[0] - start)
        for r in range(n):
            for q in range(width):
                xb[r * width + q] = X[start + r, q]
        logits = forward(params, table, xb, acts, argmax, scratch, n, kept)
        loss, hits = L.loss_and_hits(logits, y[start:start + n])
        total += loss
        correct += hits
    return total / X.shape[0], correct / X.shape[0]


@dataclass(frozen=True)
class Network:
    """An input shape ``(channels, height, width)``, a layer list and the floating-point type."""

    input_shape: tuple[int, int, int]
    layers: tuple[Layer, ...]
    dtype: np.dtype = np.dtype(np.float32)
    conv_by_gemm: bool | None = None  # None: each conv layer as layers.prefers_gemm says

    def __post_init__(self) -> None:
        object.__setattr__(self, "table", self._layer_table())

    def _layer_table(self) -> np.ndarray:
        """Shapes and buffer offsets of every layer, the shapes from :func:`layer_shapes`."""
        table = np.zeros((len(self.layers), TABLE_COLUMNS), dtype=np.int64)
        c, h, w = self.input_shape
        params_at = acts_at = argmax_at = columns_at = 0
        in_at = FROM_INPUT
        for i, (layer, out_shape) in enumerate(zip(self.layers,
                                                   layer_shapes(self.input_shape, self.layers))):
            row = table[i]
            row[[IN_C, IN_H, IN_W]] = c, h, w
            row[IN_AT] = in_at
            if isinstance(layer, Conv):
                row[KIND], row[KERNEL] = CONV, layer.kernel
                row[N_WEIGHTS] = layer.channels * c * layer.kernel ** 2
                row[BY_GEMM] = self.conv_by_gemm if self.conv_by_gemm is not None \
                    else L.prefers_gemm(c, layer.kernel, layer.channels)
                if row[BY_GEMM]:
                    row[COLUMNS_AT] = columns_at
                    columns_at += int(L.kept_columns_size(c, h, w, layer.kernel))
            elif isinstance(layer, MaxPool):
                row[KIND], row[ARGMAX_AT] = POOL, argmax_at
                argmax_at += prod(out_shape)
            elif isinstance(layer, ReLU):
                row[KIND] = RELU
            else:
                row[KIND], row[N_WEIGHTS] = DENSE, c * h * w * layer.units
            c, h, w = out_shape
            row[[OUT_C, OUT_H, OUT_W]] = c, h, w
            row[PARAMS_AT] = params_at
            params_at += row[N_WEIGHTS] + (c if row[KIND] in (CONV, DENSE) else 0)
            if row[KIND] == RELU and in_at != FROM_INPUT:
                row[OUT_AT] = in_at  # in place
            else:
                row[OUT_AT] = acts_at
                acts_at += c * h * w
            in_at = row[OUT_AT]
        object.__setattr__(self, "_sizes", (int(params_at), int(acts_at), int(argmax_at),
                                            int(columns_at)))
        return table

    @property
    def n_inputs(self) -> int:
        return prod(self.input_shape)

    @property
    def n_classes(self) -> int:
        return int(self.table[-1, OUT_C])

    @property
    def n_params(self) -> int:
        return self._sizes[0]

    def init_params(self, seed: int, init: str = "he") -> np.ndarray:
        """Seeded weights, N(0, 2/fan_in) (``he``) or N(0, 0.01^2) (``small``), layer by layer; zero biases."""
        if init not in ("he", "small"):
            raise ValueError(f"unknown init {init!r} (valid: he, small)")
        rng = np.random.default_rng(seed)
        chunks = []
        for row in self.table:
            if row[KIND] not in (CONV, DENSE):
                continue
            fan_in = row[N_WEIGHTS] // row[OUT_C]
            scale = np.sqrt(2.0 / fan_in) if init == "he" else 0.01
            chunks += [rng.normal(0.0, scale, row[N_WEIGHTS]), np.zeros(row[OUT_C])]
        return np.concatenate(chunks).astype(self.dtype)

    def make_workspace(self, batch_size: int, keep_columns: bool = True) -> tuple:
        """One thread's scratch for :func:`gradient` at this batch size.

        The last buffer keeps the im2col matrices of im2col + BLAS conv layers from the
        forward pass to the backward (:func:`layers.conv_forward_gemm`): for LeNet about
        1.7x the memory of the activations, in exchange for not building them twice.
        """
        _, n_acts, n_argmax, n_columns = self._sizes
        widest = max(max(_size_of(row, 0), _size_of(row, 1)) for row in self.table)
        return (np.empty(batch_size * self.n_inputs, self.dtype),
                np.empty(batch_size, np.int64),
                np.empty(batch_size * n_acts, self.dtype),
                np.empty(batch_size * n_argmax, np.int64),
                np.empty(max(self._conv_scratch_size(), self._dense_scratch_size(batch_size)),
                         self.dtype),
                np.empty((2, batch_size * widest), self.dtype),
                np.empty(batch_size * n_columns if keep_columns else 0, self.dtype))

    def _conv_scratch_size(self) -> int:
        """The most scratch any conv layer needs: a wide row, or its im2col matrices."""
        sizes = [1]
        for row in self.table:
            if row[KIND] == CONV:
                sizes.append(L.gemm_scratch_size(row[IN_C], row[IN_H], row[IN_W], row[OUT_C],
                                                 row[KERNEL]) if row[BY_GEMM]
                             else int(row[IN_H] * row[IN_W]))
        return int(max(sizes))

    def _dense_scratch_size(self, batch_size: int) -> int:
        widths = [max(_size_of(row, 0), _size_of(row, 1)) for row in self.table if row[KIND] == DENSE]
        return L.dense_scratch_size(batch_size, max(widths))

    def evaluate(self, params: np.ndarray, X: np.ndarray, y: np.ndarray,
                 chunk: int = 1024) -> tuple[float, float]:
        """(mean loss, accuracy) of ``params`` on ``(X, y)``."""
        xb, _, acts, argmax, scratch, _, kept = self.make_workspace(min(chunk, X.shape[0]),
                                                                    keep_columns=False)
        loss, accuracy = evaluate_kernel(params, X, y, self.table, xb, acts, argmax, scratch,
                                         kept)
        return float(loss), float(accuracy)

    def describe(self) -> list[str]:
        """One line per layer, e.g. ``conv 3x3 1->4 (28x28 -> 26x26)``."""
        lines = []
        for layer, row in zip(self.layers, self.table):
            shape_in = f"{row[IN_C]}x{row[IN_H]}x{row[IN_W]}"
            shape_out = f"{row[OUT_C]}x{row[OUT_H]}x{row[OUT_W]}"
            name = type(layer).__name__.lower()
            if isinstance(layer, Conv):
                name = f"conv {layer.kernel}x{layer.kernel}{' (im2col+BLAS)' if row[BY_GEMM] else ''}"
            lines.append(f"{name} {shape_in} -> {shape_out}")
        return lines


def _size_of(row: np.ndarray, side: int) -> int:
    c = IN_C if side == 0 else OUT_C
    return int(row[c] * row[c + 1] * row[c + 2])
