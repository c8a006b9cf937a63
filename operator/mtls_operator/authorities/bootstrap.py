"""The self-signed cluster CA the operator creates when asked to
(`--bootstrap-ca`) and none exists."""

from __future__ import annotations

import asyncio
import datetime
import logging

from mtls_operator.api.paths import secrets_path
from mtls_operator.api.secret_data import encode_data
from mtls_operator.authorities.layouts import CA_LAYOUTS, TRUST_BUNDLE_KEY
from mtls_operator.authorities.store import CARef
from mtls_operator.pki import KeySpec, certificates_to_pem, create_root_ca, private_key_to_pem
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.clock import Clock
from mtls_operator.runtime.kube import Kube

logger = logging.getLogger(__name__)

BOOTSTRAP_COMMON_NAME = "mtls-operator cluster CA"


def bootstrap_ca_data(now: datetime.datetime) -> dict[str, bytes]:
    """A fresh self-signed root (ECDSA P-256, 10 years) as a CA Secret's data,
    in the first layout, with its trust bundle."""
    key = KeySpec().generate()
    certificate_pem = certificates_to_pem([create_root_ca(key, BOOTSTRAP_COMMON_NAME, now)])
    certificate_name, key_name = CA_LAYOUTS[0]
    return {
        certificate_name: certificate_pem,
        key_name: private_key_to_pem(key),
        TRUST_BUNDLE_KEY: certificate_pem,
    }


async def ensure_cluster_ca(kube: Kube, ref: CARef, clock: Clock) -> None:
    """Create a self-signed cluster CA if its Secret does not exist yet.
    Two replicas racing here is fine: the second create fails with 409."""
    if await kube.get(secrets_path(ref.namespace, ref.name)) is not None:
        return
    data = await asyncio.get_running_loop().run_in_executor(None, bootstrap_ca_data, clock.now())
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": ref.name, "namespace": ref.namespace},
        "type": "kubernetes.io/tls",
        "data": encode_data(data),
    }
    try:
        await kube.create(secrets_path(ref.namespace), body)
    except ApiError as err:
        if not err.conflict:
            raise
        return
    logger.info("created the cluster CA in Secret %s", ref)
