"""The RAG engine: ingestion, retrieval and streaming generation, independent of HTTP and Ray.

The query path runs its Haystack components one by one (embed -> retrieve -> build prompt ->
generate) so that every stage is timed on its own: a slow cloud must be explainable stage by
stage. CPU-bound work (embedding, the embedded Qdrant client, base64 decoding) runs on one worker
thread, off the event loop, so a query being embedded never stalls tokens streaming to other
clients; questions that queue for that thread are embedded together in one batch (``batching``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any

import httpx
from haystack.dataclasses import ByteStream, StreamingChunk

from workload.service import pipelines
from workload.service.batching import Batcher
from workload.service.llm import LLMStatusError, LLMUnavailableError
from workload.service.settings import ServiceSettings


class RagError(Exception):
    """A failure reported to the client with a machine-readable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Event:
    name: str  # meta | token | done | error
    data: dict[str, Any]


def _ms(t0: float, t1: float) -> float:
    return round((t1 - t0) * 1000, 3)


# The CPU worker thread (embedding, search, ingestion) runs this much nicer than the event loop,
# which relays every stream's tokens: where the replica has fewer cores than busy threads, a batch's
# forward pass must not hold a token back for a scheduler time slice (benchmarks/rag_overhead.py
# --isolated, docs/service.md). With cores to spare it changes nothing.
CPU_WORKER_NICE_STEP = 10


def _yield_to_the_event_loop() -> None:
    """Lower the calling thread's priority (Linux: nice is per thread; threads it starts, such as
    torch's intra-op pool, inherit it). Lowering needs no privilege; where it fails, nothing changes."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + CPU_WORKER_NICE_STEP, 19))
    except (OSError, AttributeError):
        pass


class RagEngine:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.replica_id = socket.gethostname()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-cpu",
                                            initializer=_yield_to_the_event_loop)
        self._retrieval = Batcher(self._retrieve_batch, self._cpu)
        self._ready = False

    # ---- lifecycle -------------------------------------------------------------------------
    def warm_up(self) -> None:
        s = self.settings
        self.store = pipelines.document_store(s)
        self.preprocess = pipelines.preprocessing_pipeline(s)
        self.doc_embedder = pipelines.document_embedder(s)
        self.doc_embedder.warm_up()
        self.writer = pipelines.document_writer(self.store)
        self.text_embedder = pipelines.text_embedder(s)
        self.text_embedder.warm_up()
        self.retriever = pipelines.retriever(self.store, s.default_k)
        self.prompt_builder = pipelines.prompt_builder()
        self.generator = pipelines.chat_generator(s)
        self._ready = True

    async def aclose(self) -> None:
        """Release what the engine holds: the LLM client's session and kept-alive connections,
        and the CPU worker thread (work queued on it is dropped)."""
        if self._ready:
            await self.generator.aclose()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _cpu(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---- health ----------------------------------------------------------------------------
    async def readiness(self) -> dict[str, Any]:
        """Ready only when the store, the embedder and the LLM answer."""
        checks: dict[str, Any] = {"embedder": self._ready}
        try:
            checks["store_documents"] = await asyncio.wait_for(self._cpu(self.store.count_documents), 5)
            checks["store"] = True
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            checks["store"] = False
            checks["store_error"] = f"{type(exc).__name__}: {exc}"[:200]
        checks["llm"] = await self._llm_answers()
        checks["ready"] = bool(checks["embedder"] and checks["store"] and checks["llm"])
        return checks

    async def _llm_answers(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                r = await client.get(f"{self.settings.llm_base_url.rstrip('/')}/models")
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    # ---- ingestion -------------------------------------------------------------------------
    def validate_documents(self, documents: list[dict[str, Any]]) -> list[ByteStream]:
        s = self.settings
        if not documents:
            raise RagError("empty_corpus", "no documents to ingest")
        if len(documents) > s.max_upload_documents:
            raise RagError("too_many_documents", f"{len(documents)} documents > limit {s.max_upload_documents}")
        streams = []
        for i, doc in enumerate(documents):
            name = str(doc.get("name") or f"document-{i}.txt")
            mime = doc.get("mime_type") or pipelines.MIME_BY_SUFFIX.get(PurePath(name).suffix.lower())
            if mime not in pipelines.ALLOWED_MIME_TYPES:
                raise RagError("unsupported_type", f"{name}: type {mime or 'unknown'} not allowed "
                               f"(allowed: {', '.join(sorted(pipelines.ALLOWED_MIME_TYPES))})")
            if doc.get("content_base64") is not None:
                data = base64.b64decode(doc["content_base64"], validate=True)
            elif isinstance(doc.get("content"), str):
                data = doc["content"].encode()
            else:
                raise RagError("bad_document", f"{name}: give `content` (text) or `content_base64`")
            if len(data) > s.max_upload_bytes:
                raise RagError("too_large", f"{name}: {len(data)} bytes > limit {s.max_upload_bytes}")
            streams.append(ByteStream(data=data, mime_type=mime, meta={"file_name": name}))
        return streams

    def _ingest_sync(self, streams: list[ByteStream]) -> dict[str, Any]:
        t0 = time.perf_counter()
        chunks = self.preprocess.run({"router": {"sources": streams}})["splitter"]["documents"]
        t1 = time.perf_counter()
        embedded = self.doc_embedder.run(documents=chunks)["documents"] if chunks else []
        t2 = time.perf_counter()
        try:
            written = self.writer.run(documents=embedded)["documents_written"] if embedded else 0
            t3 = time.perf_counter()
            stored = self.store.count_documents()
        except Exception as exc:  # noqa: BLE001
            raise RagError("store_unavailable", f"writing to the store failed: {type(exc).__name__}: {exc}"[:500]) from exc
        return {
            "documents": len(streams),
            "chunks": len(chunks),
            "chunks_written": written,
            "bytes": sum(len(s.data) for s in streams),
            "timings": {"convert_split_ms": _ms(t0, t1), "embed_ms": _ms(t1, t2),
                        "write_ms": _ms(t2, t3), "total_ms": _ms(t0, t3)},
            "store_documents": stored,
        }

    async def ingest(self, documents: list[dict[str, Any]]) -> dict[str, Any]:
        streams = await self._cpu(self.validate_documents, documents)  # base64 decoding: off the loop
        return await self._cpu(self._ingest_sync, streams)

    async def count_documents(self) -> int:
        return await self._cpu(self.store.count_documents)

    # ---- query -----------------------------------------------------------------------------
    def _retrieve_batch(self, items: list[tuple[str, int, float]], deliver) -> None:
        """Embed the questions of a batch together, then search for each, handing each its result
        as soon as its search is done: (documents, timings) or its RagError. Runs on the CPU worker
        thread."""
        t0 = time.perf_counter()
        try:
            embeddings = pipelines.embed_texts(self.text_embedder, [q for q, _, _ in items])
        except Exception as exc:  # noqa: BLE001
            error = RagError("embedder_error", f"embedding failed: {type(exc).__name__}: {exc}"[:500])
            for i in range(len(items)):
                deliver(i, error)
            return
        t1 = time.perf_counter()
        for i, ((_, k, t_submit), embedding) in enumerate(zip(items, embeddings)):
            t_search = time.perf_counter()
            try:
                docs = self.retriever.run(query_embedding=list(embedding), top_k=k)["documents"]
            except Exception as exc:  # noqa: BLE001
                deliver(i, RagError("store_unavailable", f"retrieval failed: {type(exc).__name__}: {exc}"[:500]))
                continue
            t2 = time.perf_counter()
            # cpu_wait_ms: queued for the CPU worker thread; embed_ms: the batch's forward pass;
            # search_wait_ms: the searches of the questions before this one in the batch;
            # retrieval_ms: the whole retrieval stage as this request saw it (wait + embed + search).
            deliver(i, (docs, {"retrieval_ms": _ms(t_submit, t2), "cpu_wait_ms": _ms(t_submit, t0),
                               "embed_ms": _ms(t0, t1), "search_wait_ms": _ms(t1, t_search),
                               "retrieve_ms": _ms(t_search, t2), "embed_batch": len(items)}))

    def check_query(self, query: str, k: int | None, max_tokens: int) -> int:
        s = self.settings
        if not query.strip():
            raise RagError("bad_request", "query is empty")
        try:
            query.encode("utf-8")
        except UnicodeEncodeError:
            raise RagError("bad_request", "query is not valid Unicode text (lone surrogate)") from None
        if len(query) > s.max_query_chars:
            raise RagError("bad_request", f"query has {len(query)} characters > limit {s.max_query_chars}")
        k = s.default_k if k is None else k
        if not 1 <= k <= s.max_k:
            raise RagError("bad_request", f"k must be between 1 and {s.max_k}")
        if not 1 <= max_tokens <= s.max_tokens_limit:
            raise RagError("bad_request", f"max_tokens must be between 1 and {s.max_tokens_limit}")
        return k

    async def stream(self, query: str, *, k: int | None = None, max_tokens: int = 64,
                     ignore_eos: bool = False, session_id: str | None = None,
                     request_id: str | None = None, t_received: float | None = None,
                     cache_salt: str | None = None) -> AsyncIterator[Event]:
        """Yield meta, token..., then exactly one of done or error (the SSE contract). A ``token``
        event carries its text and the number of tokens in it (``tokens``). ``cache_salt`` goes to
        vLLM as is (its prefix cache is then shared only by requests with the same salt).

        Times are from ``t_received`` (``time.perf_counter()`` when the HTTP handler got the request;
        default: now). The consumer resumes this generator only after it has handed the previous
        event to the HTTP layer, so the time at resumption is when that event was sent.
        """
        request_id = request_id or uuid.uuid4().hex
        session_id = session_id or uuid.uuid4().hex
        ids = {"session_id": session_id, "request_id": request_id, "replica_id": self.replica_id,
               "model_id": self.settings.llm_model_id}
        t_start = t_received or time.perf_counter()
        try:
            k = self.check_query(query, k, max_tokens)
            docs, timings = await self._retrieval.submit((query, k, time.perf_counter()))
            documents = [{"id": d.id, "content": (d.content or "")[:200], "meta": d.meta, "score": d.score}
                         for d in docs]
            t_prompt = time.perf_counter()
            budget = self.settings.max_context_chars // max(len(docs), 1)
            context = [replace(d, content=(d.content or "")[:budget]) for d in docs]
            messages = self.prompt_builder.run(query=query, documents=context)["prompt"]
            timings["prompt_ms"] = _ms(t_prompt, time.perf_counter())

            # The LLM request goes out before `meta` is sent: the event's framing and sending
            # overlap the model's prefill instead of adding to TTFT.
            t_gen = time.perf_counter()
            # An instant, not a duration: this host's monotonic clock when the LLM request went
            # out. Only differences between requests mean anything (benchmarks/rag_overhead.py
            # replays the service's LLM arrivals from them).
            timings["llm_request_at_s"] = t_gen
            first: float | None = None
            usage: dict = {}
            async with _Generation(self.generator, messages, max_tokens, ignore_eos, cache_salt) as generation:
                yield Event("meta", {**ids, "k": k, "documents": documents, "timings": dict(timings)})
                timings["first_byte_ms"] = _ms(t_start, time.perf_counter())  # meta handed to the HTTP layer
                async for item in generation:
                    if isinstance(item, tuple):
                        text, tokens = item
                        if first is None:
                            first = time.perf_counter()
                            timings["llm_first_token_ms"] = _ms(t_gen, first)
                        yield Event("token", {"text": text, "tokens": tokens})
                        if "ttft_ms" not in timings:
                            # The server's TTFT, the one stamp done.timings and ragbench_ttft_seconds
                            # share (docs/service.md): the first token handed to the HTTP layer.
                            timings["ttft_ms"] = _ms(t_start, time.perf_counter())
                    else:
                        usage = item
            t_end = time.perf_counter()
            token_count = usage.get("completion_tokens") if usage else None
            timings["generate_ms"] = _ms(t_gen, t_end)
            timings["total_ms"] = _ms(t_start, t_end)
            stream_s = t_end - (first or t_gen)
            tps = (token_count / stream_s) if token_count and stream_s > 0 else None
            yield Event("done", {**ids, "k": k, "documents": documents, "timings": timings,
                                 "token_count": token_count, "tokens_per_sec": tps})
        except RagError as exc:
            yield Event("error", {"request_id": request_id, "code": exc.code, "message": exc.message})
        except Exception as exc:  # noqa: BLE001 - whatever happens, the stream ends with `error`
            yield Event("error", {"request_id": request_id, "code": "internal",
                                  "message": f"{type(exc).__name__}: {exc}"[:500]})


class _Generation:
    """One streaming LLM call, started on entering the context: iterate it for the text chunks as
    (text, tokens in it), then the usage report (a dict). Leaving the context early (the client went
    away) cancels the call, which closes the connection to the LLM and so stops the generation there
    too."""

    _END = object()

    def __init__(self, generator, messages, max_tokens: int, ignore_eos: bool, cache_salt: str | None = None) -> None:
        self._generator, self._messages = generator, messages
        # Usage in every chunk: the completion-token deltas say how many tokens each chunk carried.
        self._kwargs = {"max_tokens": max_tokens,
                        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
                        "ignore_eos": ignore_eos}
        if cache_salt is not None:
            self._kwargs["cache_salt"] = cache_salt
        self._queue: asyncio.Queue = asyncio.Queue()

    async def __aenter__(self) -> _Generation:
        self._task = asyncio.create_task(self._produce())
        await asyncio.sleep(0)  # let the request leave before the caller goes on
        return self

    async def __aexit__(self, *exc_info) -> None:
        if not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    async def _produce(self) -> None:
        async def on_chunk(chunk: StreamingChunk) -> None:
            if chunk.content:
                self._queue.put_nowait((chunk.content, int((chunk.meta or {}).get("tokens") or 1)))

        try:
            result = await self._generator.run_async(messages=self._messages, streaming_callback=on_chunk,
                                                     generation_kwargs=self._kwargs)
            replies = result["replies"]
            self._queue.put_nowait((replies[0].meta.get("usage") or {}) if replies else {})
        except Exception as exc:  # noqa: BLE001
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(self._END)

    async def __aiter__(self) -> AsyncIterator[tuple[str, int] | dict]:
        while (item := await self._queue.get()) is not self._END:
            if isinstance(item, Exception):
                raise _llm_error(item)
            yield item


def _llm_error(exc: Exception) -> RagError:
    if isinstance(exc, LLMUnavailableError):  # refused, silent, or the stream was cut
        return RagError("llm_unavailable", f"the LLM did not answer: {type(exc).__name__}: {exc}"[:500])
    if isinstance(exc, LLMStatusError):
        return RagError("llm_error", f"the LLM answered HTTP {exc.status_code}: {exc.message}"[:500])
    return RagError("llm_error", f"{type(exc).__name__}: {exc}"[:500])
