"""The HTTP face of the RAG service: a thin FastAPI ingress on Ray Serve (HTTP and SSE framing only).

``build_app`` is the typed application builder that Ray Serve (``serve run``, or a KubeRay
``RayService``'s ``import_path: workload.service.app:build_app``) calls with the app's args.

In front of the routes, ``guard.Guard`` checks the bearer token and body sizes before any body is
read; ``admission`` bounds the queries in flight. ``GET /ui`` is the chat page (``chat_page``), which
calls these routes from the same origin. No CORS middleware: browsers on other origins
get no CORS headers, so cross-origin calls from pages are refused by the browser.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import aclosing
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from ray import serve

from workload.service import chat_page, guard, telemetry
from workload.service.admission import Admission, AdmittedStream, Slot
from workload.service.rag import RagEngine, RagError
from workload.service.settings import ServiceSettings

log = logging.getLogger("ragbench.service")

api = FastAPI(title="ragbench RAG service", version="1")
api.add_middleware(guard.Guard)


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """422 naming what is wrong where, without echoing the input back (it may be anything, even
    text that cannot be encoded, or numbers JSON cannot carry)."""
    errors = [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()]
    body = {"detail": {"code": "invalid_request", "message": "the request does not match the API", "errors": errors}}
    return Response(json.dumps(body, ensure_ascii=True, default=str), status_code=422,
                    media_type="application/json")

SESSION_ID = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


class QueryRequest(BaseModel):
    query: str
    k: int | None = None
    max_tokens: int = Field(64, ge=1)
    ignore_eos: bool = False
    session_id: str | None = SESSION_ID  # generated when absent; request_id is always generated
    # Passed to vLLM: requests share prefix-cache entries only with requests of the same salt (the
    # load generator sends a new one per request to measure a cold cache). vLLM's own limits.
    cache_salt: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[^@/\\\x00]+$")


class IngestDocument(BaseModel):
    name: str = Field(..., max_length=255)
    content: str | None = None
    content_base64: str | None = None
    mime_type: str | None = Field(None, max_length=100)


class IngestRequest(BaseModel):
    documents: list[IngestDocument]


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


# RagError codes as HTTP statuses (ingestion, and the non-streaming /query).
HTTP_STATUS = {"bad_request": 400, "empty_corpus": 400, "bad_document": 400, "unsupported_type": 415,
               "too_large": 413, "too_many_documents": 413, "store_unavailable": 503,
               "llm_unavailable": 503, "llm_error": 502, "embedder_error": 500, "internal": 500}
OVERLOADED = {"code": "overloaded", "message": "too many queries in flight on this replica; retry later"}


def _http_error(code: str, message: str) -> HTTPException:
    return HTTPException(status_code=HTTP_STATUS.get(code, 500), detail={"code": code, "message": message})


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
@serve.ingress(api)
class RagDeployment:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = ServiceSettings.from_args(settings)
        guard.configure(self.settings)
        self.engine = RagEngine(self.settings)
        self.engine.warm_up()
        self.admission = Admission(self.settings.max_inflight)

    async def __del__(self) -> None:
        """Ray Serve awaits this when it stops the replica (it accepts an async ``__del__``): the
        LLM client's connections are closed, not left to the process's exit."""
        await self.engine.aclose()

    def _admit(self) -> Slot:
        slot = self.admission.try_acquire()
        if slot is None:
            raise HTTPException(status_code=503, detail=OVERLOADED, headers={"Retry-After": "1"})
        return slot

    def _check(self, body: QueryRequest) -> None:
        try:
            self.engine.check_query(body.query, body.k, body.max_tokens)
        except RagError as exc:
            raise _http_error(exc.code, exc.message) from exc

    @api.get("/", include_in_schema=False)
    async def root(self) -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)

    @api.get("/ui", include_in_schema=False)
    async def chat(self) -> Response:
        """The chat page (workload/service/static): ask, watch the answer stream, see browser-measured TTFT."""
        return chat_page.page_file("index.html")

    @api.get("/ui/{name}", include_in_schema=False)
    async def chat_file(self, name: str) -> Response:
        return chat_page.page_file(name)

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"ok": True, "replica_id": self.engine.replica_id}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        checks = await self.engine.readiness()
        checks["inflight"] = self.admission.inflight
        return JSONResponse(checks, status_code=200 if checks["ready"] else 503)

    @api.get("/metrics")
    async def metrics(self) -> PlainTextResponse:
        body, content_type = telemetry.exposition()
        return PlainTextResponse(body, media_type=content_type)

    @api.get("/documents")
    async def documents(self) -> dict:
        try:
            return {"documents": await self.engine.count_documents()}
        except Exception as exc:  # noqa: BLE001
            raise HTTPException(status_code=503, detail={"code": "store_unavailable",
                                                         "message": f"{type(exc).__name__}: {exc}"[:500]}) from exc

    @api.post("/ingest")
    async def ingest(self, body: IngestRequest) -> dict:
        try:
            result = await self.engine.ingest([d.model_dump() for d in body.documents])
        except RagError as exc:
            raise _http_error(exc.code, exc.message) from exc
        except ValueError as exc:  # bad base64, text that is not valid Unicode
            raise _http_error("bad_document", str(exc)[:500]) from exc
        telemetry.INGESTED_CHUNKS.inc(result["chunks"])
        return result

    @api.post("/query/stream")
    async def query_stream(self, body: QueryRequest) -> AdmittedStream:
        t_received = time.perf_counter()
        self._check(body)
        slot = self._admit()
        return AdmittedStream(self._events(body, slot, t_received), slot, media_type="text/event-stream",
                              headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _stream(self, body: QueryRequest, t_received: float):
        """The engine's events for one query (both query routes)."""
        return self.engine.stream(body.query, k=body.k, max_tokens=body.max_tokens, ignore_eos=body.ignore_eos,
                                  session_id=body.session_id, t_received=t_received, cache_salt=body.cache_salt)

    async def _events(self, body: QueryRequest, slot: Slot, t_received: float):
        finished = False
        try:
            async with aclosing(self._stream(body, t_received)) as events:
                async for ev in events:
                    if ev.name == "done":
                        telemetry.observe_done(ev.data["timings"])
                    elif ev.name == "error":
                        telemetry.ERRORS.labels(code=ev.data["code"]).inc()
                    finished = ev.name in ("done", "error")
                    yield _sse(ev.name, ev.data)
        finally:
            if not finished:  # cancelled or closed before the last event: the client went away
                telemetry.DISCONNECTS.inc()
            slot.release()

    @api.post("/query")
    async def query(self, body: QueryRequest) -> dict:
        """Non-streaming: the same events, collected into one answer."""
        t_received = time.perf_counter()
        self._check(body)
        slot = self._admit()
        answer, final = [], None
        try:
            async with aclosing(self._stream(body, t_received)) as events:
                async for ev in events:
                    if ev.name == "token":
                        answer.append(ev.data["text"])
                    elif ev.name in ("done", "error"):
                        final = ev
        finally:
            slot.release()
        if final is None or final.name == "error":
            data = final.data if final else {"code": "internal", "message": "no result"}
            telemetry.ERRORS.labels(code=data["code"]).inc()
            raise _http_error(data["code"], data["message"])
        telemetry.observe_stages(final.data["timings"])
        return {**final.data, "answer": "".join(answer)}


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder: validates the args early, then binds the deployment."""
    ServiceSettings.from_args(args)
    return RagDeployment.bind(dict(args))
