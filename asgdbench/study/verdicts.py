"""Verdict words and how intervals, parts and workloads turn into them.

Four verdicts, so that "not shown" never reads as "refuted":

- ``supported``: the interval lies wholly on the claimed side of the claimed
  effect (a one-sided test at 5 %);
- ``contradicted``: the interval excludes the claimed effect;
- ``inconclusive``: neither; the part says the smallest effect this
  experiment could have detected at 80 % power, from the observed spread;
- ``not testable here``: the runs cannot judge it (too few cores, seeds or
  converged runs); the part says what it needs.

A claim made of parts is ``contradicted`` if any part is, else ``supported``
if every part is, else ``inconclusive`` if any part is, else ``not testable
here``. Both sides hold their error at 5 % for the whole claim:

- supported needs every part supported, each a one-sided test at 5 %: an
  intersection-union test, whose error is at most that of the one part whose
  hypothesis is false, so it needs no adjustment;
- contradicted needs one part contradicted, and k intervals each give a
  chance to exclude a true claim by luck, so a part counts as contradicted
  only if its interval at the Bonferroni level ``1 - (1 - 90 %) / k`` (each
  end one-sided at 5 % / k) still excludes the claim (:func:`adjust`). k
  counts a claim's testable *intervals*, not its parts: the parts read from
  one interval (claim 1's direction and magnitude) err only when that interval
  misses the true effect, which happens once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from asgdbench.study.claim_statistics import (
    CONFIDENCE,
    MIN_PAIRS,
    Interval,
    PairedEffect,
    minimum_detectable_effect,
)

SUPPORTED, CONTRADICTED = "supported", "contradicted"
INCONCLUSIVE, NOT_TESTABLE = "inconclusive", "not testable here"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)


@dataclass(frozen=True)
class Part:
    """One checkable piece of a claim, with its own verdict and the numbers behind it."""

    name: str
    verdict: str
    reason: str
    at_level: Callable[[float], str] | None = field(default=None, compare=False, repr=False)
    """This part's verdict from its interval(s) at another two-sided confidence (None: the
    part has no interval, so it cannot be contradicted by one)."""
    interval: str = ""
    """Which interval the part reads (parts reading one interval share it; "": its name)."""


@dataclass(frozen=True)
class Verdict:
    """A claim judged on one workload: the verdict, the rule, why, and the table behind it."""

    claim: int
    workload: str
    verdict: str
    rule: str
    parts: tuple[Part, ...]
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = field(default=())

    @property
    def reason(self) -> str:
        return "; ".join(f"{part.name}: {part.verdict} ({part.reason})" for part in self.parts)


def combine(parts: Sequence[Part]) -> str:
    """Any part contradicted: contradicted; all supported: supported; any inconclusive:
    inconclusive; else (some not testable, the rest supported) not testable here."""
    verdicts = {part.verdict for part in parts}
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    if verdicts == {SUPPORTED}:
        return SUPPORTED
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return NOT_TESTABLE


def adjust(parts: Sequence[Part], confidence: float = CONFIDENCE) -> list[Part]:
    """Bonferroni on the contradicted side: a contradicted part stays so only if its
    interval at ``1 - (1 - confidence) / k`` still excludes the claim, k the claim's
    testable intervals. The intervals shown stay at ``confidence``; the reason says
    the level that decided."""
    intervals = {part.interval or part.name for part in parts
                 if part.at_level is not None and part.verdict != NOT_TESTABLE}
    k = len(intervals)
    if k <= 1:
        return list(parts)
    level = 1 - (1 - confidence) / k
    out = []
    for part in parts:
        if part.verdict == CONTRADICTED and part.at_level is not None:
            if part.at_level(level) == CONTRADICTED:
                part = replace(part, reason=f"{part.reason}; excludes the claim at the "
                                            f"{level:.1%} level too (Bonferroni over this "
                                            f"claim's {k} intervals)")
            else:
                part = replace(part, verdict=INCONCLUSIVE,
                               reason=f"{part.reason}; excludes the claim at {confidence:.0%} "
                                      f"but not at the {level:.1%} level its {k} intervals "
                                      f"need (Bonferroni), so not counted as contradicted")
        out.append(part)
    return out


def at_least(interval: Interval, claimed: float) -> str:
    """The verdict on "the effect is above ``claimed``" from its interval."""
    if interval.low > claimed:
        return SUPPORTED
    if interval.high <= claimed:
        return CONTRADICTED
    return INCONCLUSIVE


def at_most(interval: Interval, claimed: float, *, strict: bool = True) -> str:
    """The verdict on "the effect is below ``claimed``" (``strict=False``: at most ``claimed``)."""
    if interval.high < claimed or (not strict and interval.high <= claimed):
        return SUPPORTED
    if interval.low >= claimed if strict else interval.low > claimed:
        return CONTRADICTED
    return INCONCLUSIVE


def either_way(better: str, worse: str) -> str:
    """Two measures of one claim: one shows it and the other does not refute it, or the reverse.

    ``better`` judges "Leashed is better on measure A", ``worse`` the same on B.
    """
    verdicts = {better, worse}
    if SUPPORTED in verdicts and CONTRADICTED not in verdicts:
        return SUPPORTED
    if CONTRADICTED in verdicts and SUPPORTED not in verdicts:
        return CONTRADICTED
    if verdicts == {NOT_TESTABLE}:
        return NOT_TESTABLE
    return INCONCLUSIVE


def overall(verdicts: Sequence[Verdict]) -> str:
    """One claim across workloads: "supported on 2 of 3 workloads, inconclusive on 1"."""
    counts = Counter(v.verdict for v in verdicts)
    total = len(verdicts)
    ordered = [word for word in VERDICTS if counts[word]]
    if not ordered:
        return "no workload"
    if len(ordered) == 1:
        return f"{ordered[0]} on " + {1: "the one workload", 2: "both workloads"}.get(
            total, f"all {total} workloads")
    head, *rest = ordered
    return ", ".join([f"{head} on {counts[head]} of {total} workloads",
                      *(f"{word} on {counts[word]}" for word in rest)])


def no_worse(interval: Interval, worse: int) -> str:
    """Leashed minus the baseline, ``worse`` the sign of a worse difference: "no worse"."""
    low, high = sorted((worse * interval.low, worse * interval.high))
    if high <= 0:
        return SUPPORTED
    return CONTRADICTED if low > 0 else INCONCLUSIVE


# -- the words of a reason ------------------------------------------------------------

def ratio_text(interval: Interval | None) -> str:
    return "—" if interval is None else interval.text(2, math.exp)


def effect_counts(effect: PairedEffect) -> str:
    """How many pairs an effect used and left out, for its reason."""
    text = f"{effect.differences.size} seed pairs"
    notes = []
    if effect.censored:
        notes.append(f"{effect.censored} with one run censored at its limit")
    if effect.uninformative:
        notes.append(f"{effect.uninformative} with both censored, left out")
    if effect.unpaired:
        notes.append(f"{effect.unpaired} runs without a partner seed")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def untestable_effect(effect: PairedEffect) -> str:
    if not effect.differences.size and effect.uninformative:
        return (f"every one of the {effect.uninformative} seed pairs timed out (both runs "
                f"censored): needs a longer time limit (a larger scale) to reach ε")
    return (f"needs >= {MIN_PAIRS} seed pairs where a run reached ε; "
            f"has {effect_counts(effect)}")


def detectable(effect: PairedEffect, as_ratio: bool = True, claimed: float = 0.0,
               side: int = 1) -> str:
    """The smallest effect this experiment could have shown at 80 % power: the claimed
    bound ``claimed`` plus the detectable shift, on the claimed ``side`` (+1: above it)."""
    mde = minimum_detectable_effect(effect.spread, effect.differences.size)
    if not math.isfinite(mde):
        return "the spread is unknown"
    value = claimed + side * mde
    return ("the smallest effect detectable at 80 % power with this spread is "
            + (f"{math.exp(value):.2f}x" if as_ratio else f"{value:.3g}"))
