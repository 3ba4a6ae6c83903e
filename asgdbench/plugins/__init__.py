"""Plugins: what a user can add without touching the harness.

One set of rules for every plugin kind (:mod:`.registry`: names, validation,
provenance, entry points), the parameter grammar of spec strings
(:mod:`.params`), drop-in ``--plugin`` files (:mod:`.files`), and the
strategy contract with its registry (:mod:`.strategies`). Workloads register
through the same :class:`~.registry.Registry` in ``asgdbench/plugins/workloads.py``.
"""
