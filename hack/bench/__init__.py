"""`make bench`: speed, write count and memory of the operator, each
scenario on a fresh local control plane (operator, API server and etcd on
this machine).

`python -m bench` (with `hack/` on the path) runs the scenarios of
`__main__`; `bench.rest_clients` compares REST clients and
`bench.profile_burst` splits a burst's CPU by process. Their figures go to
`.bench/<name>.json`; `bench.doc_tables` publishes them under `docs/bench/`
and renders the tables the README and `docs/` show.

This module stays empty: the REST client comparison imports the package
in processes whose memory it measures.
"""
