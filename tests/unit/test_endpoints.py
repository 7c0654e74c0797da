"""How the two endpoints turn SSE events into record updates (DESIGN.md section 2, SSE contract)."""

from __future__ import annotations

import json

import pytest

from workload.bench.endpoints import FINISHED, OpenAIChatEndpoint, RagStreamEndpoint
from workload.bench.records import RequestRecord
from workload.bench.sse import MalformedEvent, SSEEvent, SSEParser, format_event

pytestmark = pytest.mark.unit


def new_record() -> RequestRecord:
    return RequestRecord(index=0, scenario="s", prompt_id="q0", prompt_chars=20, t_sent=1.0)


def ev(name: str, data) -> SSEEvent:
    return SSEEvent(name, data if isinstance(data, str) else json.dumps(data))


META = {"session_id": "sess-1", "request_id": "req-1", "replica_id": "pod-a", "model_id": "tiny", "k": 4,
        "documents": [], "timings": {"retrieval_ms": 3.5}}


# --------------------------------------------------------------------------- RAG /query/stream


def test_rag_request_body():
    path, body = RagStreamEndpoint(k=3, ignore_eos=False).request("what is ray?", 32)
    assert path == "/query/stream"
    assert body == {"query": "what is ray?", "k": 3, "max_tokens": 32, "ignore_eos": False}


def test_rag_full_stream_with_server_token_count():
    ep, r = RagStreamEndpoint(), new_record()
    assert ep.on_event(r, ev("meta", META), 1.125) is None
    assert (r.request_id, r.replica_id, r.model_id, r.k) == ("req-1", "pod-a", "tiny", 4)
    assert r.t_first_token is None  # meta is not a token
    assert ep.on_event(r, ev("token", {"text": "Hel"}), 1.25) is None
    assert ep.on_event(r, ev("token", {"text": "lo"}), 1.375) is None
    done = {"request_id": "req-1", "replica_id": "pod-a", "timings": {"ttft_ms": 200.0, "total_ms": 350.0},
            "token_count": 7, "tokens_per_sec": 20.0}
    assert ep.on_event(r, ev("done", done), 1.5) == FINISHED
    assert r.t_first_token == 1.25
    assert r.token_times == [1.25, 1.375]
    assert r.t_end == 1.5
    assert r.output_tokens == 7
    assert r.output_tokens_source == "server_usage"
    assert r.server_timings == {"ttft_ms": 200.0, "total_ms": 350.0}
    assert r.ok
    assert r.n_out == 7  # the server's count, not the 2 chunks
    assert r.ttft_ms == 250.0  # 1.25 - 1.0
    assert r.tpot_ms == approx_tpot(500.0, 250.0, 7)


def approx_tpot(e2e: float, ttft: float, n: int):
    return pytest.approx((e2e - ttft) / (n - 1))


def test_rag_done_without_token_count_falls_back_to_token_events():
    ep, r = RagStreamEndpoint(), new_record()
    ep.on_event(r, ev("meta", META), 1.0)
    for i, t in enumerate((1.25, 1.5, 1.75)):
        ep.on_event(r, ev("token", {"text": f"t{i}"}), t)
    assert ep.on_event(r, ev("done", {"request_id": "req-1", "timings": None}), 2.0) == FINISHED
    assert r.output_tokens is None
    assert r.output_tokens_source == "token_events"
    assert r.n_out == 3
    assert r.server_timings == {}
    assert r.request_id == "req-1" and r.replica_id == "pod-a"  # kept from meta


@pytest.mark.parametrize("count", [None, "7", 7.0])
def test_rag_non_integer_token_count_is_not_trusted(count):
    ep, r = RagStreamEndpoint(), new_record()
    ep.on_event(r, ev("token", {"text": "a"}), 1.5)
    ep.on_event(r, ev("done", {"token_count": count}), 2.0)
    assert r.output_tokens is None
    assert r.output_tokens_source == "token_events"
    assert r.n_out == 1


def test_rag_empty_token_text_does_not_set_first_token():
    ep, r = RagStreamEndpoint(), new_record()
    ep.on_event(r, ev("token", {"text": ""}), 1.25)
    ep.on_event(r, ev("token", {}), 1.375)  # no text at all
    assert r.t_first_token is None
    assert r.token_times == []
    ep.on_event(r, ev("token", {"text": "x"}), 1.5)
    assert r.t_first_token == 1.5
    assert r.token_times == [1.5]
    assert r.ttft_ms == 500.0


def test_rag_error_event_fails_the_record_with_the_server_code():
    ep, r = RagStreamEndpoint(), new_record()
    ep.on_event(r, ev("meta", META), 1.125)
    ep.on_event(r, ev("token", {"text": "a"}), 1.25)
    result = ep.on_event(r, ev("error", {"request_id": "req-1", "message": "vLLM went away",
                                         "code": "llm_unavailable"}), 1.75)
    assert result == FINISHED
    assert r.error_code == "server_error"
    assert r.server_error_code == "llm_unavailable"
    assert r.error_message == "llm_unavailable: vLLM went away"
    assert r.t_end == 1.75
    assert not r.ok
    assert r.e2e_ms == 750.0


def test_rag_error_event_without_code():
    ep, r = RagStreamEndpoint(), new_record()
    assert ep.on_event(r, ev("error", {"message": "boom"}), 2.0) == FINISHED
    assert r.server_error_code == "unknown"
    assert r.error_code == "server_error"
    assert r.error_message == "unknown: boom"


@pytest.mark.parametrize("name", ["message", "ping", "Token", "usage"])
def test_rag_unexpected_event_type_is_malformed(name):
    with pytest.raises(MalformedEvent, match=f"unexpected event type '{name}'"):
        RagStreamEndpoint().on_event(new_record(), ev(name, {"text": "x"}), 1.0)


@pytest.mark.parametrize("name", ["meta", "token", "done", "error"])
@pytest.mark.parametrize("data", ["not json", "[1, 2]"])
def test_rag_non_object_payload_is_malformed(name, data):
    with pytest.raises(MalformedEvent):
        RagStreamEndpoint().on_event(new_record(), ev(name, data), 1.0)


def test_rag_endpoint_fed_by_the_parser_from_service_frames():
    """format_event frames, split in awkward places, through the parser into the endpoint."""
    frames = (format_event("meta", META) + format_event("token", {"text": "\u00e9"})
              + format_event("token", {"text": "t"}) + format_event("done", {"token_count": 2}))
    # format_event escapes non-ASCII (\u00e9); cut inside the first token's JSON payload
    assert b'data: {"text":"\\u00e9"}' in frames
    cut_at = frames.index(b'{"text":"\\u00e9"}') + 5
    parser, ep, r = SSEParser(), RagStreamEndpoint(), new_record()
    results = []
    for piece, now in ((frames[:cut_at], 1.25), (frames[cut_at:], 1.5)):
        for event in parser.feed(piece):
            results.append(ep.on_event(r, event, now))
    assert results == [None, None, None, FINISHED]
    assert r.t_first_token == 1.5  # the first token completed in the second chunk
    assert r.token_times == [1.5, 1.5]
    assert r.request_id == "req-1"  # meta completed in the first chunk
    assert r.output_tokens == 2 and r.ok


# --------------------------------------------------------------------------- OpenAI-compatible (vLLM)


def chunk(content=None, role=None, usage=None, choices=True) -> SSEEvent:
    data: dict = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "tiny"}
    delta = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    data["choices"] = [{"index": 0, "delta": delta, "finish_reason": None}] if choices else []
    if usage is not None:
        data["usage"] = usage
    return ev("message", data)


def test_openai_request_body():
    path, body = OpenAIChatEndpoint(model="tiny").request("hi", 16)
    assert path == "/v1/chat/completions"
    assert body == {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16,
                    "stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True},
                    "ignore_eos": True}


def test_cache_salt_goes_into_the_body_only_when_given():
    _, body = OpenAIChatEndpoint(model="tiny").request("hi", 16, cache_salt="run-0.3")
    assert body["cache_salt"] == "run-0.3"
    _, body = RagStreamEndpoint(k=3).request("hi", 16, cache_salt="run-0.3")
    assert body["cache_salt"] == "run-0.3"
    assert "cache_salt" not in RagStreamEndpoint(k=3).request("hi", 16)[1]


def test_openai_stream_with_usage():
    ep, r = OpenAIChatEndpoint(model="tiny"), new_record()
    assert ep.on_event(r, chunk(role="assistant", content=""), 1.125) is None  # role chunk: no token
    assert r.t_first_token is None
    assert ep.on_event(r, chunk(content="Hi"), 1.25) is None
    assert ep.on_event(r, chunk(content=" there"), 1.5) is None
    usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    assert ep.on_event(r, chunk(usage=usage, choices=False), 1.625) is None
    assert ep.on_event(r, ev("message", "[DONE]"), 1.75) == FINISHED
    assert r.request_id == "chatcmpl-1" and r.model_id == "tiny"
    assert r.t_first_token == 1.25
    assert r.token_times == [1.25, 1.5]
    assert r.output_tokens == 5
    assert r.prompt_tokens == 12  # the server's count of the prompt, to check what was sent
    assert r.output_tokens_source == "server_usage"  # not overwritten by [DONE]
    assert r.t_end == 1.75
    assert r.ok
    assert r.tpot_ms == pytest.approx((750.0 - 250.0) / 4)


def test_openai_stream_without_usage_counts_token_events():
    ep, r = OpenAIChatEndpoint(model="tiny"), new_record()
    ep.on_event(r, chunk(content="a"), 1.25)
    ep.on_event(r, chunk(content=None), 1.3)  # e.g. the finish chunk: delta without content
    ep.on_event(r, chunk(content="b"), 1.5)
    assert ep.on_event(r, ev("message", " [DONE] "), 2.0) == FINISHED
    assert r.output_tokens is None
    assert r.output_tokens_source == "token_events"
    assert r.n_out == 2
    assert r.token_times == [1.25, 1.5]


def test_openai_error_chunk_fails_the_record():
    ep, r = OpenAIChatEndpoint(model="tiny"), new_record()
    result = ep.on_event(r, ev("message", {"error": {"message": "model overloaded", "code": 503}}), 1.5)
    assert result == FINISHED
    assert r.error_code == "server_error"
    assert "model overloaded" in r.error_message
    assert r.t_end == 1.5
    assert not r.ok


def test_openai_non_json_chunk_is_malformed():
    with pytest.raises(MalformedEvent, match="is not JSON"):
        OpenAIChatEndpoint(model="tiny").on_event(new_record(), ev("message", "garbage"), 1.0)


@pytest.mark.parametrize("data", ["[1, 2]", '"an error happened"', "42", "null"])
def test_openai_non_object_json_chunk_is_malformed(data):
    # Anything but MalformedEvent would escape send_one's except clauses and stop the whole run.
    r = new_record()
    with pytest.raises(MalformedEvent, match="is not a JSON object"):
        OpenAIChatEndpoint(model="tiny").on_event(r, ev("message", data), 1.0)
    assert r.error_code is None and r.t_first_token is None  # the caller records malformed_event


# --------------------------------------------------------------------------- tokens per event


# A stream with known gaps: (arrival time in s, tokens carried). The first event's 2 tokens are part
# of TTFT; then 40 ms before 1 token, 90 ms before 3, 20 ms before 1, 120 ms before 4.
TOKEN_EVENTS = [(1.0, 2), (1.04, 1), (1.13, 3), (1.15, 1), (1.27, 4)]
EXPECTED_ITL_MS = [40.0, 30.0, 30.0, 30.0, 20.0, 30.0, 30.0, 30.0, 30.0]


def test_rag_token_events_carry_their_token_count_and_itl_is_spread_over_them():
    ep, r = RagStreamEndpoint(), new_record()
    ep.on_event(r, ev("meta", META), 0.9)
    for t, n in TOKEN_EVENTS:
        ep.on_event(r, ev("token", {"text": "x" * n, "tokens": n}), t)
    ep.on_event(r, ev("done", {"request_id": "req-1", "token_count": 11, "timings": {}}), 1.3)
    assert r.token_counts == [2, 1, 3, 1, 4]
    assert r.itl_ms == pytest.approx(EXPECTED_ITL_MS)
    assert len(r.itl_ms) == r.n_out - 2  # one per token after the first event
    assert r.ttft_ms == pytest.approx(0.0)  # t_sent 1.0: TTFT is to the first event, whatever it carried


@pytest.mark.parametrize("tokens", [None, 0, -2, "3", True, 1.5])
def test_rag_token_event_without_a_usable_count_is_one_token(tokens):
    ep, r = RagStreamEndpoint(), new_record()
    data = {"text": "x"} if tokens is None else {"text": "x", "tokens": tokens}
    ep.on_event(r, ev("token", data), 1.25)
    assert r.token_counts == [1]


def test_openai_usage_deltas_count_the_tokens_of_each_chunk():
    ep, r = OpenAIChatEndpoint(model="tiny"), new_record()
    usage = lambda n: {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}  # noqa: E731
    ep.on_event(r, chunk(role="assistant", content="", usage=usage(0)), 0.95)  # role chunk: no token
    done = 0
    for t, n in TOKEN_EVENTS:
        done += n
        ep.on_event(r, chunk(content="x" * n, usage=usage(done)), t)
    ep.on_event(r, chunk(usage=usage(done), choices=False), 1.28)
    ep.on_event(r, ev("message", "[DONE]"), 1.3)
    assert r.token_counts == [2, 1, 3, 1, 4]
    assert r.itl_ms == pytest.approx(EXPECTED_ITL_MS)
    assert r.output_tokens == 11 and r.output_tokens_source == "server_usage"


def test_openai_a_token_without_text_goes_with_the_next_chunk_that_has_text():
    # A token whose text is still an incomplete character arrives as an empty delta; its count
    # must not be lost, and must not make an event of its own.
    ep, r = OpenAIChatEndpoint(model="tiny"), new_record()
    usage = lambda n: {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}  # noqa: E731
    ep.on_event(r, chunk(content="a", usage=usage(1)), 1.0)
    ep.on_event(r, chunk(content="", usage=usage(2)), 1.05)
    ep.on_event(r, chunk(content="\u00e9", usage=usage(3)), 1.1)
    assert r.token_times == [1.0, 1.1]
    assert r.token_counts == [1, 2]
    assert r.itl_ms == pytest.approx([50.0, 50.0])
