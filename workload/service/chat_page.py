"""The chat page: static HTML, JavaScript and CSS shipped with the package, served as they are.

No build step and nothing fetched from elsewhere: the page talks only to the service that served it
(its Content-Security-Policy allows nothing else). What it measures is described in docs/service.md.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import HTTPException
from fastapi.responses import Response

FILES = {"index.html": "text/html; charset=utf-8", "chat.js": "text/javascript; charset=utf-8",
         "chat.css": "text/css; charset=utf-8"}

# Scripts, styles and requests stay on this origin; no inline script, no frames.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    # Cross-origin isolation: Chromium's performance.now() then ticks in 5 us steps instead of 100 us.
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}


@cache
def _read(name: str) -> bytes:
    return resources.files("workload.service").joinpath("static", name).read_bytes()


def page_file(name: str) -> Response:
    """One file of the page, or 404 for any other name."""
    if name not in FILES:
        raise HTTPException(status_code=404, detail={"code": "not_found", "message": f"no page file {name!r}"})
    try:
        body = _read(name)
    except OSError:  # an installation without the package data
        raise HTTPException(status_code=404, detail={"code": "not_found", "message":
                            f"the chat page's file {name} is not installed with this service"}) from None
    return Response(body, media_type=FILES[name], headers=HEADERS)
