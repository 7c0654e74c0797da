"""The shipped benchmark corpus and the question dataset.

The ingestion benchmark posts every file returned by :func:`corpus_files` to the RAG service, and
the North-South load generator samples questions from :func:`load_questions`. Changing any file
under ``docs/`` or ``questions.jsonl`` changes ingestion and query results, so bump
``CORPUS_VERSION`` whenever the content changes; results recorded under different corpus versions
are not comparable.

Only standard-library imports: both the orchestrator and the workload environments import this.
"""

from __future__ import annotations

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
