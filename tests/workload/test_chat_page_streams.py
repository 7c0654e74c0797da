"""The chat page against answers the real service does not give on demand: a stream cut before `done`,
an event that is not JSON, an HTTP error, no answer at all. The page's own files are served as the
service serves them (chat_page, same headers); only /query/stream is answered by the test. Each case
must end as a visible error with the Ask button back, never hang. Headless Chromium; skipped only
when /usr/bin/chromium is missing."""

from __future__ import annotations

import json

import pytest

from workload.browser.chat_driver import CHROMIUM_ARGS, ChatPage, chromium_path
from workload.service import chat_page

pytestmark = [pytest.mark.unit,
              pytest.mark.skipif(not chromium_path().exists(), reason=f"no Chromium at {chromium_path()}")]

ORIGIN = "http://127.0.0.1:9"  # never reached: every request to it is answered by the test
# (a loopback origin is a secure context, which cross-origin isolation needs)


def sse(*events: tuple[str, object], sep: str = "\n") -> str:
    return "".join(f"event: {name}{sep}data: {data if isinstance(data, str) else json.dumps(data)}{sep}{sep}"
                   for name, data in events)


META = ("meta", {"request_id": "r1", "replica_id": "pod-a", "model_id": "m", "k": 1,
                 "documents": [{"id": "d1", "content": "GPU nodes carry a taint", "meta": {"file_name": "gpu.md"},
                                "score": 0.5}], "timings": {"retrieval_ms": 3.0}})


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(chromium_path()), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser):
    """A page at ORIGIN/ui whose /query/stream answers with ``answer(route)``."""
    pages = []

    def make(answer) -> ChatPage:
        page = browser.new_page()
        pages.append(page)

        def files(route):
            name = route.request.url.split("/ui", 1)[1].lstrip("/") or "index.html"
            response = chat_page.page_file(name)
            route.fulfill(status=200, body=response.body, headers={**chat_page.HEADERS,
                                                                    "content-type": chat_page.FILES[name]})

        page.route(f"{ORIGIN}/ui**", files)
        page.route(f"{ORIGIN}/query/stream", answer)
        page.goto(f"{ORIGIN}/ui")
        page.wait_for_selector("body[data-ready=true]", state="attached")
        return ChatPage(page)

    yield make
    for page in pages:
        page.close()


def stream(body: str, status: int = 200, content_type: str = "text/event-stream"):
    return lambda route: route.fulfill(status=status, body=body, headers={"content-type": content_type})


def shown_error(chat: ChatPage) -> str:
    assert chat.page.get_attribute("#status", "data-state") == "error"
    assert chat.page.locator("#error").is_visible()
    assert chat.page.get_attribute("#ask-button", "disabled") is None  # ready for the next question
    return chat.page.text_content("#error")


def test_a_complete_stream_with_crlf_comments_and_token_counts(open_page):
    body = sse(META, ("token", {"text": "GPU ", "tokens": 1}), ("token", {"text": ""}), sep="\r\n") + \
        ": keep-alive\r\n\r\n" + sse(("token", {"text": "taint", "tokens": 2}), ("unknown", {"x": 1}),
                                       ("done", {"request_id": "r1", "timings": {"ttft_ms": 1.5, "total_ms": 4.0},
                                                 "token_count": 3, "tokens_per_sec": 750.0}), sep="\r\n")
    chat = open_page(stream(body))
    rec = chat.ask("Which taint?", timeout_s=20)
    assert rec["error_code"] is None and rec["answer"] == "GPU taint"
    assert len(rec["token_times"]) == 2 and rec["token_counts"] == [1, 2]  # the empty token is not a token
    assert rec["output_tokens"] == 3 and rec["output_tokens_source"] == "server_usage"
    assert chat.page.get_attribute("#status", "data-state") == "done"
    assert chat.page.text_content("#client-tokens").startswith("3")
    assert chat.page.text_content("#server-ttft") == "1.5"
    assert "gpu.md" in chat.page.text_content("#sources")
    assert chat.page.evaluate("crossOriginIsolated")  # the page's headers: a 5 us clock, not 100 us


def test_a_stream_that_ends_without_done_is_an_error(open_page):
    chat = open_page(stream(sse(META, ("token", {"text": "half an answ"}))))
    rec = chat.ask("Which taint?", timeout_s=20)
    assert rec["error_code"] == "stream_incomplete" and rec["answer"] == "half an answ"
    assert "stream_incomplete" in shown_error(chat)


def test_an_error_event_is_shown_with_its_code(open_page):
    chat = open_page(stream(sse(META, ("error", {"request_id": "r1", "code": "llm_error", "message": "boom"}))))
    rec = chat.ask("Which taint?", timeout_s=20)
    assert (rec["error_code"], rec["server_error_code"]) == ("server_error", "llm_error")
    assert "llm_error: boom" in shown_error(chat)


def test_an_event_that_is_not_json_is_an_error(open_page):
    chat = open_page(stream(sse(META, ("token", "{not json"))))
    rec = chat.ask("Which taint?", timeout_s=20)
    assert rec["error_code"] == "malformed_event"
    assert "malformed_event" in shown_error(chat)


def test_an_http_error_shows_the_services_code(open_page):
    body = json.dumps({"detail": {"code": "overloaded", "message": "too many queries in flight"}})
    chat = open_page(stream(body, status=503, content_type="application/json"))
    rec = chat.ask("Which taint?", timeout_s=20)
    assert rec["error_code"] == "http_error" and rec["http_status"] == 503
    assert "503 overloaded: too many queries in flight" in shown_error(chat)


def test_no_answer_at_all_ends_at_the_pages_timeout(open_page):
    chat = open_page(lambda route: None)  # the request stays pending
    rec = chat.ask("Which taint?", timeout_s=1)
    assert rec["error_code"] == "first_token_timeout"
    assert 900 < rec["t_end"] - rec["t_sent"] < 10_000
    assert "first_token_timeout" in shown_error(chat)
