"""The service's front door, before any request body is read: bearer-token check and body size limits.

A pure ASGI middleware. It runs before FastAPI parses anything, so an unauthenticated client gets
401 without the server reading its body, and an oversized body is refused with 413 as soon as its
declared length (or, for a chunked upload, the bytes received so far) passes the limit.

The limits come from the deployment's settings through ``configure``: the FastAPI app object is
shipped to the Ray Serve replica by value, so the middleware reads a module global at call time
instead of holding settings of its own.
"""

from __future__ import annotations

import hmac
import json

from workload.service.settings import ServiceSettings

PROTECTED = ("/ingest", "/query")  # /query and /query/stream
_settings: ServiceSettings | None = None


def configure(settings: ServiceSettings) -> None:
    global _settings
    _settings = settings


def _protected(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PROTECTED)


def body_limit(settings: ServiceSettings, path: str) -> int:
    return settings.max_ingest_request_bytes if path.startswith("/ingest") else settings.max_request_bytes


async def _refuse(send, status: int, code: str, message: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    pass


class Guard:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        settings = _settings
        if scope["type"] != "http" or settings is None:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = dict(scope.get("headers") or [])
        if settings.api_token and _protected(path):
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, f"Bearer {settings.api_token}".encode()):
                return await _refuse(send, 401, "unauthorized", "missing or wrong bearer token",
                                     [(b"www-authenticate", b"Bearer")])
        limit = body_limit(settings, path)
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                return await _refuse(send, 400, "bad_request", "invalid Content-Length")
            if too_large:
                return await _refuse(send, 413, "too_large", f"request body larger than {limit} bytes")
        received = 0
        started = refused = False

        async def counting_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await _refuse(send, 413, "too_large", f"request body larger than {limit} bytes")
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if refused:  # the 413 went out already; whatever the app answers is dropped
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            pass
