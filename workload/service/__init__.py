"""The RAG service: Ray Serve deployment, Haystack pipelines, the LLM client."""

import os

# Haystack sends usage telemetry to an outside host (posthog) from a background thread unless this
# says no; it is read once, when haystack is first imported, which only this package does. A
# benchmarked service must not phone home, nor spend its CPU trying to where there is no internet.
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
