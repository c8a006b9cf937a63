"""A client of nginx servers, run in a pod (from a ConfigMap, with the workload image's
python3): it calls every Ready endpoint of the Services it is given, over mTLS, every
INTERVAL_SECONDS, and logs each request as a line of JSON: whether it was answered, the
serial of the certificate the server presented, and which pod answered.

The node has no kube-proxy and no cluster DNS, so this client routes as a Service would: it
reads the Services' EndpointSlices from the API server before each round (as kube-proxy
watches them) and calls only the endpoints whose `ready` condition is not false. A pod being
deleted is not ready from the moment its deletion begins; its server keeps serving for a
while after that (its preStop hook), so a request routed on a list read a moment earlier is
still answered.

Standard library only: the pod's python3 is Debian's, with nothing installed.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICES = os.environ.get("SERVICES", "").split(",")
PORT = int(os.environ.get("PORT", "8443"))
INTERVAL = float(os.environ.get("INTERVAL_SECONDS", "0.3"))
CERT = os.environ.get("TLS_CERT_FILE", "/etc/tls/tls.crt")
KEY = os.environ.get("TLS_KEY_FILE", "/etc/tls/tls.key")
CA = os.environ.get("TLS_CA_FILE", "/etc/tls/ca.crt")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def log(**fields: object) -> None:
    print(json.dumps({"time": time.time(), **fields}), flush=True)


def ready_endpoints(namespace: str) -> dict[str, list[str]]:
    """The addresses of each Service's ready endpoints, from its EndpointSlices."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ["KUBERNETES_SERVICE_PORT"]
    url = f"https://{host}:{port}/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
    # Read for each list: the kubelet refreshes the projected token.
    token = (SERVICE_ACCOUNT / "token").read_text().strip()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
    with urllib.request.urlopen(request, context=context, timeout=5) as response:  # noqa: S310
        slices: list[dict[str, Any]] = json.load(response)["items"]
    found: dict[str, set[str]] = {service: set() for service in SERVICES}
    for endpoint_slice in slices:
        service = (endpoint_slice["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service not in found:
            continue
        for endpoint in endpoint_slice.get("endpoints") or []:
            # As kube-proxy reads it: a readiness not known counts as ready.
            if (endpoint.get("conditions") or {}).get("ready") is not False:
                found[service].update(endpoint["addresses"])
    return {service: sorted(addresses) for service, addresses in found.items()}


def call(service: str, address: str, namespace: str) -> dict[str, str]:
    """One request on a new connection: the server's serial and the pod that answered. The
    files are read for each connection, so the client's own renewals are used at once."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(CERT, KEY)
    context.load_verify_locations(CA)
    # The name a Service's clients use, which the server's certificate must hold.
    hostname = f"{service}.{namespace}.svc"
    with (
        socket.create_connection((address, PORT), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        serial = str((tls.getpeercert() or {})["serialNumber"])
        tls.sendall(f"GET / HTTP/1.0\r\nHost: {hostname}\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1].decode()
    if status != "200":
        raise ValueError(f"HTTP {status}")
    pod, _, client_serial = body.decode().strip().partition(" ")
    return {"serial": serial, "pod": pod, "client_serial": client_serial}


def main() -> None:
    namespace = (SERVICE_ACCOUNT / "namespace").read_text().strip()
    endpoints: dict[str, list[str]] = {}
    while True:
        try:
            current = ready_endpoints(namespace)
        except (OSError, ValueError, KeyError) as error:
            # Not a failed request: the list read last time is used, as kube-proxy would.
            log(event="list-failed", error=f"{type(error).__name__}: {error}")
            current = endpoints
        if current != endpoints:
            log(event="endpoints", endpoints=current)
            endpoints = current
        for service, addresses in endpoints.items():
            for address in addresses:
                started = time.time()
                try:
                    answer: dict[str, object] = {"ok": True, **call(service, address, namespace)}
                except (OSError, ValueError, IndexError, KeyError) as error:
                    # Connection refused or reset, a timeout, a TLS failure (ssl.SSLError is
                    # an OSError), or an answer that is not a 200 from nginx.
                    answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
                took = round(time.time() - started, 4)
                log(event="request", service=service, address=address, took=took, **answer)
        time.sleep(INTERVAL)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
