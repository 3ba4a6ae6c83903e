"""The harness: what happens inside one run.

Threads, their start barrier and stop flag (:mod:`.runner`, :mod:`.barrier`),
the worker loop that samples, computes and applies (:mod:`.worker`), the loss
monitor (:mod:`.monitor`), the atomics and shared SGD steps that strategies are
built from (:mod:`.atomics`, :mod:`.steps`), the strategy contract's codes
(:mod:`.protocol`), test-only gates (:mod:`.gates`), pre-run checks
(:mod:`.preflight`, :mod:`.blas`), and what a run produces
(:mod:`.run_result`, :mod:`.statistics`, :mod:`.machine`).
"""
