"""fastsock's benchmark harness: compiled load generators and reference servers
(``benchmarks/loadgen``), peer servers (``benchmarks/servers``), the
side-by-side runner (``python -m benchmarks.run``), the C10k run
(``python -m benchmarks.c10k``) and the report writer (``benchmarks.report``)."""
