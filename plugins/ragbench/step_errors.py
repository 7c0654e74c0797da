"""Why a step failed, passed from its task to the target's load task through XCom.

A failed task returns nothing, so its reason would otherwise live only in its log. Each step task
records its one-line error under the XCom key ``step_error`` before failing (a retry that succeeds
starts with its XComs cleared); the load task collects them and stores them in
``target_runs.error``, which the scorecard prints next to the failed target.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

ERROR_KEY = "step_error"
MAX_CHARS = 500


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 3] + "..."


@contextlib.contextmanager
def recorded(ti: Any) -> Iterator[None]:
    """Run a step; if it fails (a timeout included, a skip not), record why, then fail as before."""
    from airflow.sdk.exceptions import AirflowSkipException

    try:
        yield
    except AirflowSkipException:
        raise
    except BaseException as exc:
        with contextlib.suppress(Exception):  # never hide the step's own error
            ti.xcom_push(key=ERROR_KEY, value=one_line(exc))
        raise


def reasons(ti: Any, task_ids: dict[str, str]) -> dict[str, str]:
    """{step name: recorded error} for the steps (name -> full task id) that recorded one."""
    found = {}
    for step, task_id in task_ids.items():
        value = ti.xcom_pull(task_ids=task_id, key=ERROR_KEY)
        if value:
            found[step] = str(value)
    return found
