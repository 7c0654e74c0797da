"""The one exception type a step raises for a failure the user can act on."""


class StepError(Exception):
    """A clear, one-line failure of a step (shown without a traceback)."""


def validation_summary(exc) -> str:
    """A pydantic ValidationError as one line, ``where: what``, for the first error it holds."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "top level"
    return f"{where}: {err['msg'].removeprefix('Value error, ')}"
