"""Layer kernels: forward and backward of conv, 2x2 max-pool, ReLU, dense and softmax cross-entropy.

This module is their index; each kind lives in a module of its own: :mod:`.layer_conv`
(direct loops), :mod:`.layer_conv_gemm` (im2col + BLAS), :mod:`.layer_pool` and
:mod:`.layer_dense` (dense, ReLU, the loss). :mod:`.network` calls them as ``layers.NAME``.

Every kernel is ``@njit(nogil=True)`` and allocation-free: it reads and writes
flat buffers that the caller owns (see :mod:`.network`), with the shapes passed
as integers. Tensors are batch-first, channels-first (``B, C, H, W``), row-major.

How each layer computes (measured per layer with ``benchmarks/scripts/cnn_speed.py``):

- **Convolution: direct loops for narrow layers, im2col + BLAS for wide ones**
  (:func:`prefers_gemm`). With few taps per output (``in_c * k * k``: 9 for
  ``cnn``'s first layer, 36 for its second, 25 for LeNet's first) or few
  output maps (6 for LeNet's first layer on CIFAR-10, 75 taps) the im2col GEMM
  is skinny and copying into the column matrix costs as much as the product,
  so the direct loops win (float32, one thread, batch 16 and 128: 1.2-3.6x
  faster on those layers). LeNet's second layer (150 taps, 16 maps, on MNIST
  and CIFAR-10) is where im2col + BLAS wins: forward 1.1-1.5x, backward
  1.6-2.6x. ``benchmarks/scripts/cnn_speed.py --layers`` measures both per
  layer, on the machine at hand.
  The direct loops run over a "wide row" (:mod:`.layer_conv` says how).
- **Dense: BLAS** (``np.dot`` into a preallocated ``out``), transposed at small
  batches (:func:`dense_forward`); hand-written loop GEMMs lost to BLAS at every
  shape of the MNIST MLP at batch 16 (0.7-1.0x, 0.2x at 128x10).
- Pooling, ReLU and the loss are a single pass each; a ReLU after a conv or
  dense layer is fused into its output pass (``relu=True``), and a ReLU before a
  max-pool into the pool's backward (:func:`maxpool_backward` given ``x``).
"""

from __future__ import annotations

from asgdbench.workloads.layer_conv import TAP_BLOCK_SPAN, conv_backward, conv_forward
from asgdbench.workloads.layer_conv_gemm import (
    GEMM_COLUMNS,
    GEMM_MAPS,
    GEMM_TAPS,
    conv_backward_gemm,
    conv_forward_gemm,
    gemm_chunk,
    gemm_scratch_size,
    kept_columns_size,
    prefers_gemm,
)
from asgdbench.workloads.layer_dense import (
    SMALL_BATCH,
    dense_backward,
    dense_forward,
    dense_scratch_size,
    loss_and_hits,
    relu_backward,
    relu_forward,
    softmax_cross_entropy,
)
from asgdbench.workloads.layer_pool import maxpool_backward, maxpool_forward

__all__ = [
    "TAP_BLOCK_SPAN",
    "conv_backward",
    "conv_forward",
    "GEMM_COLUMNS",
    "GEMM_MAPS",
    "GEMM_TAPS",
    "conv_backward_gemm",
    "conv_forward_gemm",
    "gemm_chunk",
    "gemm_scratch_size",
    "kept_columns_size",
    "prefers_gemm",
    "maxpool_backward",
    "maxpool_forward",
    "SMALL_BATCH",
    "dense_backward",
    "dense_forward",
    "dense_scratch_size",
    "loss_and_hits",
    "relu_backward",
    "relu_forward",
    "softmax_cross_entropy",
]
