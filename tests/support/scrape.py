"""Reading a /metrics scrape with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def families(text: str) -> dict[str, tuple[str, str, list[Sample]]]:
    """Family name -> (type, help, samples)."""
    return {
        f.name: (f.type, f.documentation, list(f.samples))
        for f in text_string_to_metric_families(text)
    }


def samples(text: str) -> list[Sample]:
    return [s for _, _, found in families(text).values() for s in found]


def value(text: str, metric: str, /, **labels: str) -> float | None:
    """The one sample of `metric` with exactly these labels, if any."""
    for sample in samples(text):
        if sample.name == metric and sample.labels == labels:
            return float(sample.value)
    return None


def total(text: str, metric: str, /, **labels: str) -> float:
    """The sum of the samples of `metric` whose labels include these."""
    return sum(
        float(s.value)
        for s in samples(text)
        if s.name == metric and labels.items() <= s.labels.items()
    )
