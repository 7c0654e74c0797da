"""Telemetry of the North-South step: what the workload's processes, containers and GPUs used while
the load ran (``resources``), and vLLM's own latency histograms over the same window
(``server_histograms``). See docs/telemetry.md.

Only small libraries at import time (psutil, httpx); ``prometheus_client`` is imported when vLLM's
/metrics is parsed.
"""
