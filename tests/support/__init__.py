"""What the tests share, whatever they run against.

authorities: every test CA. objects: Kubernetes-shaped inputs built with
the operator's own code. clock: the fixed NOW and a fake clock. loop: a
scenario on an event loop of its own. fake_api: an in-memory API client.
cluster: how tests reach a real API server, and readers and waiters over
it. scrape and monitoring: /metrics and the alerting rules. chart: the
Helm chart and the real helm. x509_checks, encrypted_keys, golden,
stalling_proxy and paths: what their names say.
"""
