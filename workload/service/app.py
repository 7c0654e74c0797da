"""The HTTP face of the RAG service: a thin FastAPI ingress on Ray Serve (HTTP and SSE framing only).

``build_app`` is the typed application builder that Ray Serve (``serve run``, or a KubeRay
``RayService``'s ``import_path: workload.service.app:build_app``) calls with the app's args.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field
from ray import serve

from workload.service import telemetry
from workload.service.rag import RagEngine, RagError
from workload.service.settings import ServiceSettings

log = logging.getLogger("ragbench.service")

api = FastAPI(title="ragbench RAG service", version="1")


class QueryRequest(BaseModel):
    query: str
    k: int | None = None
    max_tokens: int = Field(64, ge=1)
    ignore_eos: bool = False
    session_id: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


class IngestDocument(BaseModel):
    name: str = Field(..., max_length=255)
    content: str | None = None
    content_base64: str | None = None
    mime_type: str | None = None


class IngestRequest(BaseModel):
    documents: list[IngestDocument]


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


HTTP_STATUS = {"bad_request": 400, "empty_corpus": 400, "unsupported_type": 415, "too_large": 413,
               "too_many_documents": 413, "bad_document": 400, "store_unavailable": 503}


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
@serve.ingress(api)
class RagDeployment:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = ServiceSettings.from_args(settings)
        self.engine = RagEngine(self.settings)
        self.engine.warm_up()
        self.inflight = 0

    def _authorize(self, request: Request) -> None:
        token = self.settings.api_token
        if not token:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token")

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"ok": True, "replica_id": self.engine.replica_id}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        checks = await self.engine.readiness()
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
            raise HTTPException(status_code=503, detail=f"store unavailable: {exc}") from exc

    @api.post("/ingest")
    async def ingest(self, body: IngestRequest, request: Request) -> dict:
        self._authorize(request)
        try:
            result = await self.engine.ingest([d.model_dump() for d in body.documents])
        except RagError as exc:
            raise HTTPException(status_code=HTTP_STATUS.get(exc.code, 500),
                                detail={"code": exc.code, "message": exc.message}) from exc
        except ValueError as exc:  # bad base64
            raise HTTPException(status_code=400, detail={"code": "bad_document", "message": str(exc)}) from exc
        telemetry.INGESTED_CHUNKS.inc(result["chunks"])
        return result

    @api.post("/query/stream")
    async def query_stream(self, body: QueryRequest, request: Request) -> StreamingResponse:
        self._authorize(request)
        if self.inflight >= self.settings.max_inflight:
            telemetry.REJECTED.inc()
            raise HTTPException(status_code=503, detail={"code": "overloaded",
                                                         "message": "too many requests in flight"})
        try:
            self.engine.check_query(body.query, body.k, body.max_tokens)
        except RagError as exc:
            raise HTTPException(status_code=400, detail={"code": exc.code, "message": exc.message}) from exc
        self.inflight += 1
        return StreamingResponse(self._events(body), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _events(self, body: QueryRequest):
        t0 = time.perf_counter()
        first_token = True
        try:
            async for ev in self.engine.stream(body.query, k=body.k, max_tokens=body.max_tokens,
                                               ignore_eos=body.ignore_eos, session_id=body.session_id):
                if ev.name == "token" and first_token:
                    first_token = False
                    telemetry.TTFT.observe(time.perf_counter() - t0)
                elif ev.name == "done":
                    telemetry.observe_stages(ev.data["timings"])
                elif ev.name == "error":
                    telemetry.ERRORS.labels(code=ev.data["code"]).inc()
                yield _sse(ev.name, ev.data)
        except asyncio.CancelledError:
            telemetry.DISCONNECTS.inc()
            raise
        finally:
            self.inflight -= 1

    @api.post("/query")
    async def query(self, body: QueryRequest, request: Request) -> dict:
        """Non-streaming: the same events, collected into one answer."""
        self._authorize(request)
        answer, final = [], None
        async for ev in self.engine.stream(body.query, k=body.k, max_tokens=body.max_tokens,
                                           ignore_eos=body.ignore_eos, session_id=body.session_id):
            if ev.name == "token":
                answer.append(ev.data["text"])
            elif ev.name in ("done", "error"):
                final = ev
        if final is None or final.name == "error":
            data = final.data if final else {"code": "internal", "message": "no result"}
            status = 400 if data["code"] == "bad_request" else 503 if data["code"].endswith("unavailable") else 500
            raise HTTPException(status_code=status, detail=data)
        return {**final.data, "answer": "".join(answer)}


def build_app(args: dict[str, Any]) -> serve.Application:
    """Application builder: validates the args early, then binds the deployment."""
    ServiceSettings.from_args(args)
    return RagDeployment.bind(dict(args))
