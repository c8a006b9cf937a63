"""The rows of a scenario's table and how its values are written."""

from __future__ import annotations

from dataclasses import dataclass, field

# Memory targets of the operator, by number of certificates.
RSS_TARGETS_MIB = {1000: 150, 10000: 250, 50000: 600}


@dataclass(frozen=True)
class Figure:
    """One row of the table: `value` as printed, `number` in `unit` for the JSON."""

    name: str
    value: str
    remark: str
    number: float | None = None
    unit: str = ""


@dataclass
class Figures:
    rows: list[Figure] = field(default_factory=list)

    def note(
        self, name: str, value: str, remark: str, number: float | None = None, unit: str = ""
    ) -> None:
        self.rows.append(Figure(name, value, remark, number, unit))

    def note_memory(self, name: str, memory_kib: tuple[int, int], remark: str = "") -> None:
        """The operator's RSS and its peak, as `OperatorProcess.memory_kib` gives them."""
        rss, peak = memory_kib
        self.note(name, mib(rss), f"peak {mib(peak)}{remark}", rss / 1024, "MiB")


def rss_target(size: int) -> str:
    """The remark naming the memory target at `size` certificates, if any."""
    target = RSS_TARGETS_MIB.get(size)
    return f"; target at most {target} MiB" if target else ""


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def per_second(rates: list[float]) -> str:
    return ", ".join(f"{rate:.0f}/s" for rate in rates)


def p95(values: list[float]) -> float:
    """The 95th percentile, as the nearest rank below it."""
    ranked = sorted(values)
    return ranked[max(int(len(ranked) * 0.95) - 1, 0)]
