"""Python's cycle collector, set for an operator's kind of garbage."""

from __future__ import annotations

import gc

# Nearly all the operator's garbage is acyclic: decoded JSON of watch events
# and responses, freed by reference counting the moment it is dropped. The
# default threshold (700 new container objects) runs the cycle collector
# some 75 times a second in a burst, each pass walking the young objects
# for cycles that are not there: about a tenth of the operator's CPU. At
# 10,000 a pass still comes every few hundred milliseconds of a burst, and
# the young generation it walks stays small (about a megabyte).
YOUNG_GENERATION_THRESHOLD = 10_000


def tune_collector() -> None:
    """Collect cycles less often, and move what is alive at start-up (the
    imported modules, classes and tables) out of the collector's sight:
    it lives as long as the process and is never garbage."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
    gc.collect()
    gc.freeze()
