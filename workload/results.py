"""The JSON result document every step writes (versioned schema, shared by local and cluster runs)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = "ragbench.result/v1"
# What goes through XCom instead of a document when the target has a results store: where the
# document is, and enough to check it (docs/kubernetes.md, "Results that travel").
REF_SCHEMA = "ragbench.result-ref/v1"


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


def document_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=None, separators=(",", ":"), default=str).encode()


def reference(doc: dict[str, Any], url: str, data: bytes) -> dict[str, Any]:
    """The reference to a stored document: its step and verdict, where it is, its size and digest."""
    return {"schema": REF_SCHEMA, "step": doc.get("step"), "ok": doc.get("ok"), "error": doc.get("error"),
            "url": url, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def is_reference(value: Any) -> bool:
    return isinstance(value, dict) and value.get("schema") == REF_SCHEMA


def store_document(doc: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Write the document as ``<prefix>/<step>.json`` to any fsspec URL (s3://, gs://, file://...);
    return its reference. The protocol's fsspec package (s3fs, gcsfs) must be installed."""
    import fsspec
    import fsspec.implementations.local

    url = f"{prefix.rstrip('/')}/{doc['step']}.json"
    data = document_bytes(doc)
    fs, path = fsspec.core.url_to_fs(url)
    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        # Only a local folder is made: on an object store "makedirs" would create a missing bucket.
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, data)
    return reference(doc, url, data)


def write_result(doc: dict[str, Any], out: str | os.PathLike | None, results_store: str | None = None) -> None:
    """The step's output: the document itself, or, with a results store, the document there and
    only its reference at ``out``. A store that cannot be written is an error the caller reports."""
    if results_store:
        write_document(store_document(doc, results_store), out)
    else:
        write_document(doc, out)


def write_document(doc: dict[str, Any], out: str | os.PathLike | None) -> None:
    """Write atomically (a partial file is never left behind), or print when no path is given.
    A path that is not a regular file (/dev/null, a pipe) is written to, never replaced."""
    text = document_bytes(doc).decode()
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
