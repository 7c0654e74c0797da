"""The one exception type a step raises for a failure the user can act on."""


class StepError(Exception):
    """A clear, one-line failure of a step (shown without a traceback)."""
