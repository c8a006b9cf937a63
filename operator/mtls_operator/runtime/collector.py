"""Python's cycle collector, set for an operator's kind of garbage."""

from __future__ import annotations

import gc

# Nearly all the operator's garbage is acyclic: decoded JSON of watch events
# and responses, freed by reference counting the moment it is dropped. At
# the default threshold (700 new container objects) a 2,000-certificate
# burst ran 165 collections that found nothing to free, about 8 % of the
# operator's CPU; at 10,000 it runs 8, and the young generation each pass
# walks stays around a megabyte.
YOUNG_GENERATION_THRESHOLD = 10_000


def tune_collector() -> None:
    """Collect cycles less often, and move what is alive at start-up (the
    imported modules, classes and tables) out of the collector's sight:
    it lives as long as the process and is never garbage."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
    gc.collect()
    gc.freeze()
