"""The shipped benchmark corpus and the question dataset.

The ingestion benchmark posts every file returned by :func:`corpus_files` to the RAG service, and
the North-South load generator samples questions from :func:`load_questions`. Changing any file
under ``docs/`` or ``questions.jsonl`` changes ingestion and query results, so bump
``CORPUS_VERSION`` whenever the content changes; results recorded under different corpus versions
are not comparable.

Only standard-library imports: both the orchestrator and the workload environments import this.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CORPUS_VERSION = "1"
CORPUS_DIR = Path(__file__).parent / "docs"
QUESTIONS_PATH = Path(__file__).parent / "questions.jsonl"

CORPUS_SUFFIXES = frozenset({".md", ".txt", ".html"})


def corpus_files() -> list[Path]:
    """Return the corpus documents (``.md``, ``.txt``, ``.html``) in ``docs/``, sorted by name."""
    return sorted(
        p for p in CORPUS_DIR.iterdir() if p.is_file() and p.suffix in CORPUS_SUFFIXES
    )


def load_questions() -> list[dict]:
    """Return the question dataset: dicts with ``id``, ``question`` and ``source`` keys."""
    questions: list[dict] = []
    with QUESTIONS_PATH.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                questions.append(json.loads(line))
    return questions


def fingerprint(files: list[Path], root: Path) -> dict:
    """Content identity of a set of corpus files: a SHA-256 over their paths (relative to ``root``)
    and bytes, in path order, with the number of files and their total size."""
    digest, total = hashlib.sha256(), 0
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
        total += len(data)
    return {"sha256": digest.hexdigest(), "documents": len(files), "bytes": total}


def describe(files: list[Path], root: Path) -> dict:
    """What was ingested: ``version`` is CORPUS_VERSION when the files are exactly the shipped
    corpus (wherever it was copied to), else ``custom-`` and the start of their hash."""
    found = fingerprint(files, root)
    shipped = fingerprint(corpus_files(), CORPUS_DIR)
    same = found["sha256"] == shipped["sha256"]
    return {"version": CORPUS_VERSION if same else f"custom-{found['sha256'][:12]}", **found}
