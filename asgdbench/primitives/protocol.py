"""The contract between the harness's worker loop and a strategy's kernels.

Outcome codes are what ``update`` returns about a gradient; control cells are
the slots of the run's shared int64 ``control`` array that every kernel may
read. Cells sit a cache line (8 int64) apart so that the stop flag, which every
thread polls, never shares a line with a counter that threads write.
"""

# -- outcomes of ``update`` -------------------------------------------------
APPLIED = 1
"""The gradient became one update of the model (counted in ``updates_applied``)."""

MERGED = 2
"""The gradient was folded into an update that another thread counts (SYNC)."""

DROPPED = 0
"""The gradient was discarded (Leashed-SGD after ``tp`` failed CAS retries)."""

STOP = -1
"""The update budget is spent or the run is stopping: the thread must exit."""

# -- tokens of ``read`` -------------------------------------------------------
NOT_READ = -1
"""The token ``read`` returns when the run stopped before it could read: the
thread exits at once, without computing a gradient or calling ``update``.
Every other token is the version read: how many updates the model had
received before the returned vector (exact for consistent strategies)."""

# -- cells of the control array ---------------------------------------------
STOP_FLAG = 0
"""Non-zero once the harness (or a strategy) has decided the run is over."""

MAX_UPDATES = 8
"""The update budget; a strategy applies no update past it."""

READY = 16
"""Threads that have reached the start barrier (compiled and set up)."""

GO = 24
"""Set by the harness when every thread is ready: the clock starts."""

LOG_CURSOR = 32
"""Next free entry of the loss log."""

ERROR = 40
"""Non-zero if a strategy found a broken invariant; the run then fails loudly."""

NEVER = 48
"""Always zero: a stop cell for waits that must not be abandoned."""

CONTROL_CELLS = 56
