"""Prometheus metrics in the text exposition format, kept by hand: a few
gauges per certificate and per CA, and issuance counters and durations."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Issuance takes milliseconds (ECDSA) to seconds (RSA 4096 on a busy node).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[tuple[str, str], ...]


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(DURATION_BUCKETS, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1


@dataclass(frozen=True)
class CertificateGauges:
    secret: str
    not_after: float | None
    renewal: float | None
    ready: bool


class Metrics:
    def __init__(self) -> None:
        self.certificates: dict[tuple[str, str], CertificateGauges] = {}
        self.cas: dict[tuple[str, str], float] = {}
        self._issuances: dict[Labels, int] = {}
        self._durations: dict[Labels, _Histogram] = {}
        self._pod_requests: dict[Labels, int] = {}
        self._pod_signing = _Histogram()
        self.leader: bool | None = None  # None: leader election is off

    def set_certificate(self, namespace: str, name: str, gauges: CertificateGauges) -> None:
        self.certificates[(namespace, name)] = gauges

    def forget_certificate(self, namespace: str, name: str) -> None:
        self.certificates.pop((namespace, name), None)

    def set_ca(self, namespace: str, name: str, not_after: float | None) -> None:
        if not_after is None:
            self.cas.pop((namespace, name), None)
        else:
            self.cas[(namespace, name)] = not_after

    def observe_issuance(self, result: str, trigger: str, seconds: float) -> None:
        labels = (("result", result), ("trigger", trigger))
        self._issuances[labels] = self._issuances.get(labels, 0) + 1
        self._durations.setdefault((("result", result),), _Histogram()).observe(seconds)

    def observe_pod_certificate(self, outcome: str, reason: str, seconds: float) -> None:
        """A PodCertificateRequest answered: Issued, Denied or Failed, and why."""
        labels = (("outcome", outcome), ("reason", reason))
        self._pod_requests[labels] = self._pod_requests.get(labels, 0) + 1
        if outcome == "Issued":
            self._pod_signing.observe(seconds)

    def render(self) -> str:
        lines: list[str] = []
        self._render_gauges(lines)
        self._render_issuances(lines)
        self._render_pod_requests(lines)
        return "\n".join(lines) + "\n"

    def _render_gauges(self, lines: list[str]) -> None:
        certificates = sorted(self.certificates.items())
        _family(
            lines,
            "mtls_certificate_expiration_timestamp_seconds",
            "gauge",
            "notAfter of the certificate in the Secret, as a Unix timestamp.",
            (
                (_certificate_labels(key, g), g.not_after)
                for key, g in certificates
                if g.not_after is not None
            ),
        )
        _family(
            lines,
            "mtls_certificate_renewal_timestamp_seconds",
            "gauge",
            "When the certificate will be renewed, as a Unix timestamp.",
            (
                (_certificate_labels(key, g), g.renewal)
                for key, g in certificates
                if g.renewal is not None
            ),
        )
        _family(
            lines,
            "mtls_certificate_ready",
            "gauge",
            "1 when the certificate's Ready condition is True, else 0.",
            ((_certificate_labels(key, g), 1.0 if g.ready else 0.0) for key, g in certificates),
        )
        _family(
            lines,
            "mtls_ca_expiration_timestamp_seconds",
            "gauge",
            "notAfter of each CA in use, as a Unix timestamp.",
            (
                ((("namespace", ns), ("secret", name)), value)
                for (ns, name), value in sorted(self.cas.items())
            ),
        )

    def _render_issuances(self, lines: list[str]) -> None:
        _family(
            lines,
            "mtls_issuance_total",
            "counter",
            "Issuance attempts by result and trigger.",
            ((labels, float(count)) for labels, count in sorted(self._issuances.items())),
        )
        if self.leader is not None:
            _family(
                lines,
                "mtls_operator_leader",
                "gauge",
                "1 when this replica holds the Lease and does the work, else 0.",
                [((), 1.0 if self.leader else 0.0)],
            )
        name = "mtls_issuance_duration_seconds"
        lines += [
            f"# HELP {name} Time to generate the key, sign and write the Secret.",
            f"# TYPE {name} histogram",
        ]
        for labels, histogram in sorted(self._durations.items()):
            lines += _histogram_lines(name, labels, histogram)

    def _render_pod_requests(self, lines: list[str]) -> None:
        _family(
            lines,
            "mtls_pod_certificate_requests_total",
            "counter",
            "PodCertificateRequests answered, by outcome (Issued, Denied, Failed) and reason.",
            ((labels, float(count)) for labels, count in sorted(self._pod_requests.items())),
        )
        name = "mtls_pod_certificate_signing_duration_seconds"
        lines += [
            f"# HELP {name} Time from taking an issued request to writing its status.",
            f"# TYPE {name} histogram",
        ]
        if self._pod_signing.count:
            lines += _histogram_lines(name, (), self._pod_signing)


def _histogram_lines(name: str, labels: Labels, histogram: _Histogram) -> list[str]:
    lines = []
    cumulative = 0
    for bound, count in zip(DURATION_BUCKETS, histogram.counts, strict=True):
        cumulative += count
        lines.append(f"{name}_bucket{_format((*labels, ('le', str(bound))))} {cumulative}")
    lines.append(f"{name}_bucket{_format((*labels, ('le', '+Inf')))} {histogram.count}")
    lines.append(f"{name}_sum{_format(labels)} {histogram.total}")
    lines.append(f"{name}_count{_format(labels)} {histogram.count}")
    return lines


def _certificate_labels(key: tuple[str, str], gauges: CertificateGauges) -> Labels:
    return (("namespace", key[0]), ("name", key[1]), ("secret", gauges.secret))


def _family(
    lines: list[str],
    name: str,
    kind: str,
    help_text: str,
    samples: Iterable[tuple[Labels, float | None]],
) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        lines.append(f"{name}{_format(labels)} {value}")


def _format(labels: Labels | Mapping[str, str]) -> str:
    pairs = labels.items() if isinstance(labels, Mapping) else labels
    if not pairs:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
