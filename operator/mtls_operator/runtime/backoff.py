"""How long to wait before trying again, for every kind of retry: one table."""

from __future__ import annotations

# A request the API server answered 429/5xx or did not answer: a few quick
# attempts, then the caller's own retry takes over.
REQUEST = (0.2, 0.5, 1.0, 2.0, 4.0)
# A watch that failed: it must outlive any outage, so it tries forever.
WATCH = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# An object whose reconciliation failed: a bad object must not cost the
# others, so its looks grow far apart.
RECONCILE = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# A status that could not be written (the API may be down): look again then.
UNWRITTEN_STATUS = 30.0
# A certificate waiting for its CA's trust bundle to be published first.
UNPUBLISHED_BUNDLE = 1.0
# A request from a namespace its watch has not delivered yet: it comes
# within moments (the namespace exists, or the request could not).
UNSEEN_NAMESPACE = 1.0


def delay(table: tuple[float, ...], failures: int) -> float:
    """The wait after `failures` consecutive failures (0: the first one)."""
    return table[min(failures, len(table) - 1)]
