"""One record per request: raw timestamps only; metrics are computed from records afterwards.

Times are seconds on the client's monotonic clock, relative to the start of the scenario's measured
load (``t0``; warm-up requests, sent before it, have negative times). A failed
request is a record with ``error_code`` set; nothing is raised out of the load loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Machine-readable error codes a record can carry.
ERROR_CODES = (
    "connect_timeout",
    "first_token_timeout",
    "total_timeout",
    "connect_error",
    "http_error",
    "stream_incomplete",  # the stream ended without `done` or `error`
    "malformed_event",
    "server_error",  # the server sent an `error` event (its own code is kept in `server_error_code`)
    "client_error",
)


@dataclass
class RequestRecord:
    index: int
    scenario: str
    prompt_id: str
    prompt_chars: int
    warmup: bool = False
    t_scheduled: float | None = None  # open loop: when the request was due
    t_sent: float | None = None
    t_first_byte: float | None = None
    t_first_token: float | None = None  # first token event with non-empty text
    token_times: list[float] = field(default_factory=list)  # every token event with text
    # Tokens each of those events carried (parallel to token_times; empty in records written before
    # events carried counts, which then count as one token each).
    token_counts: list[int] = field(default_factory=list)
    t_end: float | None = None  # done / error received, or the failure noticed
    http_status: int | None = None
    request_id: str | None = None  # from `meta` (RAG) or the first chunk's `id` (OpenAI)
    server_request_id: str | None = None  # the `done` event's request_id: the join key of server_timings
    replica_id: str | None = None
    model_id: str | None = None
    k: int | None = None
    output_tokens: int | None = None
    output_tokens_source: str | None = None  # "server_usage" or "token_events"
    prompt_tokens: int | None = None  # the server's usage report, when it sends one (OpenAI)
    connect_ms: float | None = None  # TCP connect time, when this request opened a new connection
    cache_salt: str | None = None  # the prefix-cache salt sent with the request (cold cache); None: none sent
    server_timings: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    server_error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None and self.t_end is not None

    def fail(self, code: str, message: str, t_end: float) -> None:
        if self.error_code is None:  # keep the first cause
            self.error_code = code
            self.error_message = message[:500]
        if self.t_end is None:
            self.t_end = t_end

    # Derived per-request figures (milliseconds). None when not defined for this record.
    @property
    def ttft_ms(self) -> float | None:
        if self.t_first_token is None or self.t_sent is None:
            return None
        return (self.t_first_token - self.t_sent) * 1000

    @property
    def ttft_from_schedule_ms(self) -> float | None:
        if self.t_first_token is None or self.t_scheduled is None:
            return None
        return (self.t_first_token - self.t_scheduled) * 1000

    @property
    def e2e_ms(self) -> float | None:
        if self.t_end is None or self.t_sent is None:
            return None
        return (self.t_end - self.t_sent) * 1000

    @property
    def n_out(self) -> int:
        if self.output_tokens is not None:
            return self.output_tokens
        return len(self.token_times)

    @property
    def tpot_ms(self) -> float | None:
        ttft, e2e = self.ttft_ms, self.e2e_ms
        if ttft is None or e2e is None or self.n_out < 2:
            return None
        return (e2e - ttft) / (self.n_out - 1)

    @property
    def tokens_per_event(self) -> list[int]:
        """Tokens carried by each token event (1 each when the events carried no counts)."""
        if len(self.token_counts) == len(self.token_times):
            return self.token_counts
        return [1] * len(self.token_times)

    @property
    def itl_ms(self) -> list[float]:
        """One inter-token latency per token after the first event: the gap before an event that
        carried n tokens is spread evenly over them (n values of gap / n). Tokens that came with
        the first event are part of TTFT and give no ITL."""
        t, counts = self.token_times, self.tokens_per_event
        out: list[float] = []
        for a, b, n in zip(t, t[1:], counts[1:]):
            n = max(n, 1)
            out.extend([(b - a) * 1000 / n] * n)
        return out

    @property
    def client_minus_server_ttft_ms(self) -> float | None:
        """Client TTFT minus the server's own ``timings.ttft_ms``, for a record whose ``done`` event
        belongs to the same request as its ``meta`` (request ids present and equal); else None."""
        ttft = self.ttft_ms
        server = self.server_timings.get("ttft_ms") if self.server_timings else None
        if ttft is None or isinstance(server, bool) or not isinstance(server, int | float):
            return None
        if self.request_id is None or self.request_id != self.server_request_id:
            return None
        return ttft - float(server)

    @property
    def schedule_lag_ms(self) -> float | None:
        if self.t_scheduled is None or self.t_sent is None:
            return None
        return (self.t_sent - self.t_scheduled) * 1000

    def shift(self, dt: float) -> None:
        """Move every timestamp by ``dt`` seconds (onto another t0 of the same monotonic clock)."""
        for name in ("t_scheduled", "t_sent", "t_first_byte", "t_first_token", "t_end"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value + dt)
        self.token_times = [t + dt for t in self.token_times]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**data)
