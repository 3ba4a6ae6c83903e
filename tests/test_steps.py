"""The shared SGD steps: exact NumPy results (no FMA contraction), one vectorised pass."""

from __future__ import annotations

import re

import numba
import numpy as np
import pytest
from numba import njit

from asgdbench.primitives.steps import sgd_step_into


@njit(nogil=True)
def step_into(destination, source, grad, lr):
    """A non-cached caller, so that its generated code can be inspected."""
    sgd_step_into(destination, source, grad, lr)


def random_inputs(dtype, n: int = 10_007, seed: int = 0):
    """Values with full mantissas, so a fused multiply-add would round differently somewhere."""
    rng = np.random.default_rng(seed)
    source = rng.standard_normal(n).astype(dtype)
    grad = rng.standard_normal(n).astype(dtype)
    return source, grad, dtype(0.0123456789)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_into_equals_the_numpy_expression_bit_for_bit(dtype):
    source, grad, lr = random_inputs(dtype)
    destination = np.full_like(source, np.nan)
    step_into(destination, source, grad, lr)
    np.testing.assert_array_equal(destination, source - lr * grad)


def test_the_exactness_test_can_tell_a_fused_multiply_add_apart():
    """fma(-lr, g, s) in float32 is the float64 result rounded once (the product is exact in float64).

    It differs from ``s - lr*g`` (two roundings) on part of these inputs, so the
    bit-for-bit test above would fail if the compiler contracted the step into FMAs.
    """
    source, grad, lr = random_inputs(np.float32)
    fused = (source.astype(np.float64) - np.float64(lr) * grad.astype(np.float64)).astype(np.float32)
    assert np.count_nonzero(fused != source - lr * grad) > 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_into_may_write_over_its_source(dtype):
    """``sgd_step_into(x, x, g, lr)`` is ``x -= lr*g``: the alias check falls back correctly."""
    source, grad, lr = random_inputs(dtype)
    params = source.copy()
    step_into(params, params, grad, lr)
    np.testing.assert_array_equal(params, source - lr * grad)


def test_step_into_between_rows_of_one_pool():
    """Leashed-SGD's use: the new vector and its base are rows of one 2-D pool."""
    source, grad, lr = random_inputs(np.float32, n=1001)
    pool = np.zeros((3, source.shape[0]), np.float32)
    pool[2] = source
    step_into(pool[0], pool[2], grad, lr)
    np.testing.assert_array_equal(pool[0], source - lr * grad)
    np.testing.assert_array_equal(pool[2], source)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_into_compiles_to_one_vectorised_pass_without_fma(dtype):
    """The loop is SIMD (``fsub <k x T>``), and nothing fuses the multiply into the subtract."""
    source, grad, lr = random_inputs(dtype, n=64)
    step_into(np.empty_like(source), source, grad, lr)
    signature = next(s for s in step_into.signatures if s[0].dtype == numba.from_dtype(dtype))
    llvm = step_into.inspect_llvm(signature)
    scalar = "float" if dtype == np.float32 else "double"
    assert re.search(rf"fsub(?: \w+)* <\d+ x {scalar}>", llvm), "the step loop was not vectorised"
    assert "fmuladd" not in llvm and "llvm.fma" not in llvm
    assert not re.search(r"fsub (?:\w+ )*(?:contract|fast)", llvm)
