"""Checks a workload is held to: ``asgdbench check workload:NAME``.

:func:`check_workload` loads the workload as a run would and holds it to four properties:

- *data present*: its data loads (else the one-line error, which names the download);
- *shapes*: ``init_params`` gives ``(n_params,)`` finite values in the workload's dtype, and
  one ``gradient`` call on a minibatch that includes the last sample writes every component
  of a ``(n_params,)`` gradient with finite values and a finite loss; the shapes of its
  training data are shown;
- *gradient matches finite differences*: in float64, at the initial parameters, on one
  minibatch of the default size, the kernel's gradient against central differences of the
  loss it returns, on a few coordinates (the largest components and some drawn at random
  among those not negligible): the largest relative error must stay under ``rtol``;
- *defaults converge*: a real SEQ run with the workload's own defaults (float32, its step
  size, batch size, target loss and time limit) reaches the target loss in time; the line
  says how long it took.

A workload without a target loss (the consistency probe) is not trained to one: its gradient
and its run are reported, not judged. A sparse workload's two kernels are checked through
:func:`dense_gradient` (support, gradient on it, scattered into a whole vector): its gradient
must then be zero off the support, which the finite differences see too.
"""

from __future__ import annotations

import math
import time

import numpy as np

from asgdbench.engine.checks import Check
from asgdbench.errors import DataError, UserError, one_line
from asgdbench.plugins.workloads import Workload, WorkloadSpec, get_workload

RTOL = 1e-4
"""Largest relative error allowed between the gradient and central differences. In float64,
with :data:`DIFFERENCE_STEP`, rounding contributes about 1e-10 / |component| and truncation far
less, so 1e-4 leaves room for components down to 1e-6 while catching any wrong term (a
missing factor, a transposed weight, a dropped bias) by orders of magnitude."""
DIFFERENCE_STEP = 1e-6
NEGLIGIBLE = 1e-3  # components below this share of the largest are not drawn


def check_workload(name: str | WorkloadSpec, data_dir: str | None = None, *,
                   coordinates: int = 8, rtol: float = RTOL, seed: int = 0,
                   converge: bool = True) -> list[Check]:
    """Hold workload ``name`` to the properties of the module docstring: one :class:`Check` each.

    ``name`` is a registered workload (the SEQ run looks it up by name). ``converge=False``
    leaves out that run (which takes up to the workload's time limit).
    """
    spec = name if isinstance(name, WorkloadSpec) else get_workload(name)
    learns = spec.defaults.target_loss is not None
    started = time.perf_counter()
    try:
        workload = spec.load(data_dir=data_dir, dtype="float64")
    except DataError as error:
        return [Check("data present", False, one_line(error))]
    except UserError:
        raise  # a bad configuration: one line and exit 2, as for a run
    except Exception as error:  # the workload's own build failed
        return [Check("workload builds", False, f"{type(error).__name__}: {one_line(error)}")]
    loaded_s = time.perf_counter() - started
    dataset = workload.description.get("dataset")
    checks = [Check("data present", True,
                    f"{workload.n_samples} training samples"
                    + (f" of {dataset}" if dataset else "") + f", loaded in {loaded_s:.1f} s")]

    try:
        shapes, gradient = _shapes(workload, spec.defaults.batch_size, seed)
    except Exception as error:  # init_params, make_workspace or the kernel raised
        shapes, gradient = Check("shapes", False, f"{type(error).__name__}: "
                                                  f"{one_line(error)}"), ()
    checks.append(shapes)
    if not shapes.passed:
        return checks
    params, rows, grad = gradient
    checks.append(_finite_differences(workload, params, rows, grad, coordinates, rtol, seed,
                                      judged=learns))
    if converge:
        checks.append(_converges(spec, data_dir, learns))
    return checks


def dense_gradient(workload: Workload):
    """The workload's gradient as ``(params, train_data, rows, workspace, grad) -> loss`` with
    a whole ``grad`` vector: the kernel itself for a dense workload; for a sparse one, its
    support and gradient kernels, the values scattered into ``grad`` (zero off the support)."""
    if not workload.sparse:
        return workload.gradient

    def gradient(params, train_data, rows, workspace, grad):
        room = int(workload.max_support(rows.shape[0]))
        support = np.empty(room, np.int64)
        values = np.empty(room, workload.dtype)
        n = int(workload.support(train_data, rows, workspace, support))
        loss = workload.gradient(params, train_data, rows, workspace, support, n, values)
        grad[:] = 0
        grad[support[:n]] = values[:n]
        return loss

    return gradient


def _shapes(workload: Workload, batch_size: int, seed: int) -> tuple[Check, tuple]:
    """The params, gradient and data shapes; on success also (params, rows, grad)."""
    n = workload.n_params
    problems = []
    params = np.asarray(workload.init_params(seed))
    if params.shape != (n,) or params.dtype != workload.dtype:
        problems.append(f"init_params gave {params.dtype} {params.shape}, expected "
                        f"{workload.dtype} ({n},)")
    elif not np.all(np.isfinite(params)):
        problems.append("init_params gave values that are not finite")
    if workload.n_samples < 1:
        problems.append(f"n_samples is {workload.n_samples}")
    data = ", ".join(f"{a.dtype}{list(a.shape)}" if isinstance(a, np.ndarray)
                     else type(a).__name__ for a in workload.train_data)
    if problems:
        return Check("shapes", False, "; ".join(problems)), ()
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, workload.n_samples, batch_size).astype(np.int64)
    rows[-1] = workload.n_samples - 1  # the sampler reaches the last sample: so must the data
    grad = np.full(n, np.nan, dtype=workload.dtype)
    work = workload.make_workspace(batch_size)
    loss = float(dense_gradient(workload)(params, workload.train_data, rows, work, grad))
    if not math.isfinite(loss):
        problems.append(f"the loss is {loss}")
    if not np.all(np.isfinite(grad)):
        problems.append(f"{int(np.sum(~np.isfinite(grad)))} of {n} gradient components not "
                        "written or not finite")
    detail = (f"params ({n},) {workload.dtype}, gradient ({n},) on a minibatch of "
              f"{batch_size} including sample {workload.n_samples - 1}; data {data}")
    if problems:
        return Check("shapes", False, "; ".join(problems) + f" ({detail})"), ()
    return Check("shapes", True, detail), (params, rows, grad)


def _finite_differences(workload: Workload, params: np.ndarray, rows: np.ndarray,
                        grad: np.ndarray, coordinates: int, rtol: float, seed: int,
                        judged: bool) -> Check:
    name = "gradient matches central differences"
    work = workload.make_workspace(rows.size)
    scratch = np.empty_like(grad)

    def loss(at: np.ndarray) -> float:
        return float(dense_gradient(workload)(at, workload.train_data, rows, work, scratch))

    magnitude = np.abs(grad)
    largest = np.argsort(magnitude)[::-1][:max(1, coordinates // 2)]
    candidates = np.setdiff1d(np.flatnonzero(magnitude >= NEGLIGIBLE * magnitude.max()),
                              largest)
    drawn = np.random.default_rng(seed).permutation(candidates)[:coordinates - largest.size]
    chosen = np.concatenate([largest, drawn]).astype(np.int64)
    worst, worst_at = 0.0, int(chosen[0])
    for i in chosen:
        h = DIFFERENCE_STEP * max(1.0, abs(float(params[i])))
        shifted = params.copy()
        shifted[i] += h
        up = loss(shifted)
        shifted[i] = params[i] - h
        down = loss(shifted)
        numeric = (up - down) / (2 * h)
        analytic = float(grad[i])
        scale = max(abs(numeric), abs(analytic))
        error = 0.0 if scale == 0 else abs(numeric - analytic) / scale
        if not error <= worst:
            worst, worst_at = error, int(i)
    detail = (f"largest relative error {worst:.2e} (at component {worst_at}) over "
              f"{chosen.size} components, float64, step {DIFFERENCE_STEP:g}; bound {rtol:g}")
    if not judged:
        return Check(name, None, detail + " (no target loss: the gradient is not a loss's, "
                                          "not judged)")
    return Check(name, worst <= rtol, detail)


def _converges(spec: WorkloadSpec, data_dir: str | None, learns: bool) -> Check:
    from asgdbench.engine.runner import run  # the runner imports this module's neighbours

    name = "defaults converge under seq"
    defaults = spec.defaults
    if not learns:
        return Check(name, None, "no target loss: nothing to converge to")
    started = time.perf_counter()
    result = run(spec.name, "seq", 1, data_dir=data_dir)
    took = time.perf_counter() - started
    limit = "no time limit" if defaults.max_time is None else f"time limit {defaults.max_time:g} s"
    if result.status == "converged":
        return Check(name, True,
                     f"target loss {defaults.target_loss:g} reached in "
                     f"{result.time_to_target_s:.1f} s of training ({limit}, lr "
                     f"{defaults.lr:g}, batch {defaults.batch_size}); the run took {took:.1f} s "
                     f"with loading and compilation")
    final = "none" if result.final_loss is None else f"{result.final_loss:.4g}"
    return Check(name, False,
                 f"the run ended as {result.status} after {result.wall_s:.1f} s with loss "
                 f"{final}, target {defaults.target_loss:g} ({limit}, lr {defaults.lr:g}, "
                 f"batch {defaults.batch_size})" + (f": {result.error}" if result.error else ""))
