"""The ingest step: post a corpus to the service's /ingest in batches and report what it took."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from workload.corpus import describe
from workload.errors import StepError

SUFFIXES = {".md", ".txt", ".html", ".htm", ".pdf"}


def corpus_files(corpus_dir: Path) -> list[Path]:
    if not corpus_dir.is_dir():
        raise StepError(f"corpus folder {corpus_dir} does not exist")
    files = sorted(p for p in corpus_dir.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise StepError(f"corpus folder {corpus_dir} is empty: no {', '.join(sorted(SUFFIXES))} files")
    return files


def _payload(path: Path) -> dict:
    if path.suffix.lower() == ".pdf":
        import base64

        return {"name": path.name, "content_base64": base64.b64encode(path.read_bytes()).decode()}
    return {"name": path.name, "content": path.read_text(encoding="utf-8", errors="replace")}


def ingest_corpus(endpoint: str, corpus_dir: Path, batch_size: int = 8, token: str | None = None,
                  timeout_s: float = 600, progress: bool = True) -> dict:
    files = corpus_files(corpus_dir)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    totals = {"documents": 0, "chunks": 0, "bytes": 0}
    stages = {"convert_split_ms": 0.0, "embed_ms": 0.0, "write_ms": 0.0}
    t0 = time.perf_counter()
    with httpx.Client(base_url=endpoint, timeout=timeout_s, headers=headers) as client:
        for i in range(0, len(files), batch_size):
            batch = files[i:i + batch_size]
            try:
                r = client.post("/ingest", json={"documents": [_payload(p) for p in batch]})
            except httpx.HTTPError as exc:
                raise StepError(f"could not reach {endpoint}/ingest: {type(exc).__name__}: {exc}") from exc
            if r.status_code != 200:
                raise StepError(f"/ingest answered HTTP {r.status_code}: {r.text[:300]}")
            body = r.json()
            for key in totals:
                totals[key] += body[key]
            for key in stages:
                stages[key] += body["timings"][key]
            if progress:
                print(f"[ingest] {min(i + batch_size, len(files))}/{len(files)} files, "
                      f"{totals['chunks']} chunks", file=sys.stderr, flush=True)
        seconds = time.perf_counter() - t0
        count = client.get("/documents").json().get("documents")
    return {
        **totals,
        "corpus": describe(files, corpus_dir),
        "files": len(files),
        "seconds": seconds,
        "chunks_per_s": totals["chunks"] / seconds if seconds > 0 else None,
        "stage_ms": stages,
        "store_documents": count,
    }
