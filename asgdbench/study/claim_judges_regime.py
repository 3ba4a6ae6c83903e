"""How claim 6 (the sparse regime) is judged from run records: HOGWILD!'s time to ε against
lock-based AsyncSGD's and Leashed-SGD's on a sparse workload. A pure function, as in
:mod:`~asgdbench.study.claim_judges` (claims 1-3), whose helpers it shares.

"No slower" is a non-inferiority claim, so it needs a margin: an interval of a time
ratio never lies wholly at or below exactly 1 when the two are equally fast, and with
no margin the part would ask HOGWILD! to be shown *faster*. The margin is claim 1's
smallest claimed speed-up, 1.2: a gap the paper would not call a speed-up for Leashed
(claim 1) is not a slowdown for HOGWILD! either, so both claims read time in one
currency. Supported: the ratio HOGWILD! / rival lies wholly below 1.2 (at most 20 %
slower, one-sided at 5 %); contradicted: wholly at or above it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from asgdbench.engine.run_result import RunResult
from asgdbench.study.claim_judges import CLAIMED_SPEEDUP, Table, rechecked
from asgdbench.study.claim_runs import (
    SPARSE_HOGWILD,
    SPARSE_RIVALS,
    Context,
    by_seed,
    bytes_written_per_update,
    censored,
    runs_of,
    thread_counts_run,
    time_to_epsilon,
)
from asgdbench.study.claim_statistics import PairedEffect, log_ratio, paired_effect
from asgdbench.study.verdicts import (
    INCONCLUSIVE,
    NOT_TESTABLE,
    Part,
    at_most,
    detectable,
    effect_counts,
    ratio_text,
    untestable_effect,
)

NO_SLOWER_MARGIN = CLAIMED_SPEEDUP
"""Claim 6's margin: HOGWILD! / rival time to ε below 1.2 is "no slower" (see the module)."""


def judge_regime(results: Sequence[RunResult], workload: str, context: Context
                 ) -> tuple[list[Part], Table]:
    headers = ("threads", "strategy", "median time to ε [s] (unreached: at limit)", "converged",
               "bytes written / update (median)",
               "time ratio HOGWILD! / this, per seed pair (HL [90% CI])", "pairs")
    if workload in context.missing:
        return [Part("HOGWILD! no slower", NOT_TESTABLE,
                     f"workload {workload!r} cannot run here: {context.missing[workload]}")
                ], (headers, [])
    lr = context.base_lr[workload]
    counts = thread_counts_run(results, workload, SPARSE_HOGWILD, context.cores)
    rows, parts = [], []
    for threads in counts:
        hogwild = runs_of(results, workload, SPARSE_HOGWILD, threads, lr)
        for label in (SPARSE_HOGWILD, *SPARSE_RIVALS):
            runs = hogwild if label == SPARSE_HOGWILD else runs_of(results, workload, label,
                                                                   threads, lr)
            ratio, pairs = "—", ""
            if label != SPARSE_HOGWILD:
                name = f"HOGWILD! no slower than {label} at {threads} threads"
                if not runs:
                    parts.append(Part(name, NOT_TESTABLE, f"no {label} runs at {threads} threads"))
                else:
                    effect = paired_effect(by_seed(hogwild, time_to_epsilon, censored),
                                           by_seed(runs, time_to_epsilon, censored), log_ratio)
                    parts.append(no_slower_part(effect, name, label))
                    ratio, pairs = ratio_text(effect.interval), effect_counts(effect)
            times = [time_to_epsilon(r) for r in runs]
            written = [b for b in map(bytes_written_per_update, runs) if not math.isnan(b)]
            rows.append((str(threads), label.label, f"{np.median(times):.3g}" if times else "—",
                         f"{sum(r.converged for r in runs)}/{len(runs)}",
                         f"{np.median(written):.3g}" if written else "—", ratio, pairs))
    if not counts:
        parts.append(Part("HOGWILD! no slower", NOT_TESTABLE,
                          f"needs {SPARSE_HOGWILD} runs with >= 2 threads on >= 2 cores; the "
                          f"runs had {context.cores} cores"))
    return parts, (headers, rows)


def no_slower_part(effect: PairedEffect, name: str, rival: object) -> Part:
    """HOGWILD! / ``rival`` time to ε below :data:`NO_SLOWER_MARGIN`, per seed pair, in log."""
    if effect.interval is None:
        return Part(name, NOT_TESTABLE, untestable_effect(effect))
    margin = math.log(NO_SLOWER_MARGIN)
    verdict = at_most(effect.interval, margin)
    text = (f"time ratio HOGWILD! / {rival} {ratio_text(effect.interval)} "
            f"({effect.interval.confidence:.1%} interval) over {effect_counts(effect)}; no "
            f"slower needs it below {NO_SLOWER_MARGIN:g} (at most 20 % slower), at or above "
            f"contradicts it")
    return Part(name, verdict, text if verdict != INCONCLUSIVE else
                f"{text}; {detectable(effect, claimed=margin, side=-1)}",
                at_level=rechecked(effect, lambda i: at_most(i, margin)))
