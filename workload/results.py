"""The JSON result document every step writes (versioned schema, shared by local and cluster runs)."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = "ragbench.result/v1"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def result_document(step: str, data: dict[str, Any], *, started_at: str, ok: bool = True,
                    error: str | None = None) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "step": step,
        "ok": ok,
        "error": error,
        "started_at": started_at,
        "finished_at": now_iso(),
        "host": socket.gethostname(),
        "data": data,
    }


def write_document(doc: dict[str, Any], out: str | os.PathLike | None) -> None:
    """Write atomically (a partial file is never left behind), or print when no path is given.
    A path that is not a regular file (/dev/null, a pipe) is written to, never replaced."""
    text = json.dumps(doc, indent=None, separators=(",", ":"), default=str)
    if out is None or str(out) == "-":
        print(text)
        return
    path = Path(out)
    if path.exists() and not path.is_file():
        with path.open("w") as f:
            f.write(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
