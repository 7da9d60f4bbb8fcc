"""Peer servers driven by the harness: each a script started as
``python -m benchmarks.servers.NAME --host H --port N [...]`` that prints one
line ``NAME listening on SCHEME://H:P`` when ready and exits 0 on SIGINT/SIGTERM."""
