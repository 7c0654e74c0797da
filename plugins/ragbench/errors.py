"""The orchestrator's one exception for failures a user can act on (shown as one line)."""


class RagbenchError(Exception):
    pass
