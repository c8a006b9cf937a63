"""Where CPU-bound work runs: quick work on the event loop, the rest in a
crypto thread, so that RSA never stalls the other reconciliations."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mtls_operator.pki.keys import KeyAlgorithm, KeySpec
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.metrics import Metrics

from support.authorities import make_ca
from support.clock import NOW, FakeClock
from support.fake_api import FakeKube


@pytest.mark.parametrize(("quick", "on_the_loop"), [(True, True), (False, False)])
def test_compute_runs_quick_work_on_the_loop_and_the_rest_in_a_thread(
    quick: bool, on_the_loop: bool
) -> None:
    async def where() -> bool:
        runtime = Runtime(FakeKube(), FakeClock(NOW), Metrics(), workers=1, crypto_threads=1)
        loop_thread = threading.get_ident()
        ran_in = await runtime.compute(threading.get_ident, quick=quick)
        runtime.executor.shutdown()
        return ran_in == loop_thread

    assert asyncio.run(where()) is on_the_loop


@pytest.mark.parametrize(
    ("spec", "quick"),
    [
        (KeySpec(KeyAlgorithm.ECDSA, 256), True),
        (KeySpec(KeyAlgorithm.ED25519, None), True),
        (KeySpec(KeyAlgorithm.RSA, 2048), False),
    ],
)
def test_only_rsa_is_slow(spec: KeySpec, quick: bool) -> None:
    assert spec.quick is quick
    assert make_ca(spec).quick is quick
