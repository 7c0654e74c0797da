"""Incremental Server-Sent Events parser (the WHATWG event-stream format).

Feed it bytes as they arrive from the network; it yields complete events. It tolerates events
split across chunks, several events in one chunk, comment and keep-alive lines (``:``), and any
of CRLF, LF or CR line endings. Multi-byte UTF-8 characters split across chunks are decoded
correctly.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str
    id: str | None = None

    def json(self) -> dict:
        """The data field parsed as a JSON object; raises ``MalformedEvent`` otherwise."""
        try:
            value = json.loads(self.data)
        except ValueError as exc:
            raise MalformedEvent(f"{self.event!r} event data is not JSON: {self.data[:80]!r}") from exc
        if not isinstance(value, dict):
            raise MalformedEvent(f"{self.event!r} event data is not a JSON object")
        return value


class MalformedEvent(ValueError):
    """An event whose payload breaks the contract (recorded as a failed request)."""


class SSEParser:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._last_was_cr = False

    def feed(self, chunk: bytes) -> Iterator[SSEEvent]:
        """Consume a chunk of bytes and yield every event it completes."""
        text = self._decoder.decode(chunk)
        if not text:
            return  # nothing decoded yet (an empty chunk, or part of a multi-byte character)
        if self._last_was_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across two chunks
        self._last_was_cr = False
        self._buffer += text
        while True:
            idx = _first_line_end(self._buffer)
            if idx < 0:
                return
            line = self._buffer[:idx]
            sep = self._buffer[idx]
            if sep == "\r":
                if idx + 1 < len(self._buffer):
                    rest_start = idx + 2 if self._buffer[idx + 1] == "\n" else idx + 1
                else:
                    self._last_was_cr = True
                    rest_start = idx + 1
            else:
                rest_start = idx + 1
            self._buffer = self._buffer[rest_start:]
            event = self._line(line)
            if event is not None:
                yield event

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment / keep-alive
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            self._id = value
        # "retry" and unknown fields are ignored, as the specification says.
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:  # a block without data lines is dropped, as the specification says
            self._event = ""
            return None
        event = SSEEvent(event=self._event or "message", data="\n".join(self._data), id=self._id)
        self._event = ""
        self._data = []
        return event


def _first_line_end(text: str) -> int:
    cr = text.find("\r")
    lf = text.find("\n")
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)


def format_event(event: str, data: dict) -> bytes:
    """Frame one event the way the RAG service sends it."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
