"""A multilayer perceptron: ReLU hidden layers, softmax cross-entropy, one flat parameter vector.

Forward and backward run in nopython, nogil code; the matrix products go to
BLAS (``np.dot`` with ``out=``), so a step costs what the GEMMs cost and
allocates nothing. The flat layout (per layer: W as fan_in x fan_out, then b)
is what the strategies copy, version and publish.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from asgdbench.workloads.layers import loss_and_hits, softmax_cross_entropy


@njit(nogil=True, cache=True)
def _gather(X, rows, out):
    for r in range(rows.shape[0]):
        out[r, :] = X[rows[r], :]


@njit(nogil=True, cache=True)
def forward(params, layers, xb, acts):
    """Logits of the batch ``xb``; hidden activations are left in ``acts``."""
    batch = xb.shape[0]
    n_layers = layers.shape[0] - 1
    h = xb
    p_off = 0
    a_off = 0
    for layer in range(n_layers):
        fan_in, fan_out = layers[layer], layers[layer + 1]
        W = params[p_off:p_off + fan_in * fan_out].reshape((fan_in, fan_out))
        p_off += fan_in * fan_out
        b = params[p_off:p_off + fan_out]
        p_off += fan_out
        z = acts[a_off:a_off + batch * fan_out].reshape((batch, fan_out))
        a_off += batch * fan_out
        np.dot(h, W, z)
        if layer < n_layers - 1:
            for r in range(batch):
                for c in range(fan_out):
                    z[r, c] = max(z[r, c] + b[c], 0)
        else:
            for r in range(batch):
                for c in range(fan_out):
                    z[r, c] += b[c]
        h = z
    return h


@njit(nogil=True, cache=True)
def gradient(params, data, rows, work, grad):
    """Minibatch loss at ``params``; writes its gradient into ``grad``.

    ``data`` is ``(X, y, layers)``, ``rows`` the minibatch's sample indices and
    ``work`` the thread's scratch from :meth:`MLP.make_workspace`.
    """
    X, y, layers = data
    xb, acts, deltas, yb = work
    batch = rows.shape[0]
    n_layers = layers.shape[0] - 1
    _gather(X, rows, xb)
    for r in range(batch):
        yb[r] = y[rows[r]]
    logits = forward(params, layers, xb, acts)
    n_classes = layers[n_layers]
    delta = deltas[0, :batch * n_classes].reshape((batch, n_classes))
    loss = softmax_cross_entropy(logits, yb, delta)

    p_end = params.shape[0]
    a_end = 0
    for layer in range(n_layers):
        a_end += batch * layers[layer + 1]
    a_end -= batch * n_classes
    for layer in range(n_layers - 1, -1, -1):
        fan_in, fan_out = layers[layer], layers[layer + 1]
        b_off = p_end - fan_out
        w_off = b_off - fan_in * fan_out
        p_end = w_off
        if layer > 0:
            a_end -= batch * fan_in
            h_prev = acts[a_end:a_end + batch * fan_in].reshape((batch, fan_in))
        else:
            h_prev = xb
        np.dot(h_prev.T, delta, grad[w_off:b_off].reshape((fan_in, fan_out)))
        gb = grad[b_off:b_off + fan_out]
        gb[:] = 0
        for r in range(batch):
            for c in range(fan_out):
                gb[c] += delta[r, c]
        if layer > 0:
            W = params[w_off:b_off].reshape((fan_in, fan_out))
            below = deltas[(n_layers - layer) % 2, :batch * fan_in].reshape((batch, fan_in))
            np.dot(delta, W.T, below)
            for r in range(batch):
                for c in range(fan_in):
                    if h_prev[r, c] <= 0:
                        below[r, c] = 0
            delta = below
    return loss


@njit(nogil=True, cache=True)
def evaluate_kernel(params, X, y, layers, xb, acts):
    """Mean cross-entropy and accuracy over all of ``X``, a chunk of rows at a time."""
    chunk = xb.shape[0]
    total = 0.0
    correct = 0
    for start in range(0, X.shape[0], chunk):
        stop = min(start + chunk, X.shape[0])
        n = stop - start
        xb[:n] = X[start:stop]
        logits = forward(params, layers, xb[:n], acts)
        chunk_loss, chunk_hits = loss_and_hits(logits, y[start:stop])
        total += chunk_loss
        correct += chunk_hits
    return total / X.shape[0], correct / X.shape[0]


@dataclass(frozen=True)
class MLP:
    """Layer sizes (inputs, hidden..., classes) and the floating-point type."""

    layer_sizes: tuple[int, ...]
    dtype: np.dtype = np.dtype(np.float32)

    @property
    def layers(self) -> np.ndarray:
        return np.asarray(self.layer_sizes, dtype=np.int64)

    @property
    def n_params(self) -> int:
        sizes = self.layer_sizes
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))

    def init_params(self, seed: int, init: str = "he") -> np.ndarray:
        """Seeded initial weights: ``he`` (N(0, 2/fan_in)) or ``small`` (N(0, 0.01^2)); zero biases."""
        if init not in ("he", "small"):
            raise ValueError(f"unknown init {init!r} (valid: he, small)")
        rng = np.random.default_rng(seed)
        chunks = []
        for fan_in, fan_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:]):
            scale = np.sqrt(2.0 / fan_in) if init == "he" else 0.01
            chunks += [rng.normal(0.0, scale, fan_in * fan_out), np.zeros(fan_out)]
        return np.concatenate(chunks).astype(self.dtype)

    def make_workspace(self, batch_size: int) -> tuple:
        """One thread's scratch for :func:`gradient` at this batch size."""
        sizes = self.layer_sizes
        xb = np.empty((batch_size, sizes[0]), dtype=self.dtype)
        acts = np.empty(batch_size * sum(sizes[1:]), dtype=self.dtype)
        deltas = np.empty((2, batch_size * max(sizes[1:])), dtype=self.dtype)
        labels = np.empty(batch_size, dtype=np.int64)
        return (xb, acts, deltas, labels)

    def evaluate(self, params: np.ndarray, X: np.ndarray, y: np.ndarray,
                 chunk: int = 1024) -> tuple[float, float]:
        """(mean loss, accuracy) of ``params`` on ``(X, y)``."""
        xb, acts, *_ = self.make_workspace(min(chunk, X.shape[0]))
        loss, accuracy = evaluate_kernel(params, X, y, self.layers, xb, acts)
        return float(loss), float(accuracy)
