"""Python's cyclic garbage collector paused while large lists and dicts are built.

CPython runs its cycle collector after every few hundred container allocations (lists, tuples,
dicts), and each collection of the oldest generation walks every live container. Reading a table
of 200,000 rows (a list of cells per row), building the 200,000 rows of a summary (a dict per
row) or writing their JSON allocates millions of containers and no reference cycles, so about a
third of that time went to collections that free nothing (issue 17, docs/performance.md).
:func:`paused_gc` switches the collector off for such a step and back on after it (only if it was
on: nested and concurrent uses leave it as they found it). What it changes is when cycles are
collected, never a result.

Reference: the Python documentation of :mod:`gc` (``gc.disable``, ``gc.isenabled``).
"""

from __future__ import annotations

import contextlib
import gc

__all__ = ["paused_gc"]


@contextlib.contextmanager
def paused_gc():
    """Run the ``with`` block with the cyclic garbage collector disabled (re-enabled after it when it
    was enabled before)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
