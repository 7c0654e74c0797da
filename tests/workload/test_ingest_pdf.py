"""PDF ingestion with a real PDF (built here, byte by byte) through the RAG engine's Haystack
pipeline, and the upload limits of /ingest (size, count, type, encoding)."""

from __future__ import annotations

import base64
import binascii
import io

import pytest

from workload.service.rag import RagEngine, RagError
from workload.service.settings import ServiceSettings

PDF_PHRASE = "Which DCGM exporter metric reports GPU framebuffer memory?"
PARAGRAPHS = [
    "GPU telemetry runbook. The DCGM exporter reports GPU framebuffer memory in the metric "
    "DCGM_FI_DEV_FB_USED, in mebibytes, and GPU utilisation in DCGM_FI_DEV_GPU_UTIL, in percent.",
    "Container CPU comes from cAdvisor: the rate of container_cpu_usage_seconds_total over one "
    "minute, in cores. Working set memory is container_memory_working_set_bytes.",
]
FILLER = ("The platform team reviews these dashboards every morning and files a ticket when a "
          "benchmark window shows a saturated node pool or an evicted pod. ")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_bytes(pages: list[list[str]] | None = None) -> bytes:
    """A valid PDF 1.4 with one text page per list of lines (Helvetica, no compression): the
    catalog, the page tree, the pages, their content streams, a font and the cross-reference table."""
    if pages is None:
        words = (" ".join(PARAGRAPHS) + " " + FILLER * 12).split()
        lines = [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
        pages = [lines[:30], lines[30:]]
    n = len(pages)
    font_id = 3 + 2 * n
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{' '.join(f'{3 + 2 * i} 0 R' for i in range(n))}] /Count {n} >>".encode()]
    for i, lines in enumerate(pages):
        text = "BT /F1 10 Tf 50 760 Td 13 TL " + " ".join(f"({_escape(line)}) Tj T*" for line in lines) + " ET"
        content = text.encode("latin-1")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
                       f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode())
        objects.append(b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write(b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets))
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def test_the_pdf_is_valid_and_its_text_extracts():
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(pdf_bytes()), strict=True)
    assert len(reader.pages) == 2
    text = " ".join(page.extract_text() for page in reader.pages)
    assert "DCGM_FI_DEV_FB_USED" in text and "container_memory_working_set_bytes" in text


def settings(tmp_path, **kw) -> ServiceSettings:
    return ServiceSettings(qdrant_path=str(tmp_path / "qdrant"), llm_base_url="http://127.0.0.1:9/v1", **kw)


@pytest.mark.integration
def test_pdf_is_converted_chunked_embedded_and_retrieved(tmp_path):
    import asyncio

    engine = RagEngine(settings(tmp_path, split_length_words=60, split_overlap_words=5))
    engine.warm_up()  # the real embedder and an embedded Qdrant on disk
    data = pdf_bytes()
    result = asyncio.run(engine.ingest([{"name": "runbook.pdf", "content_base64": base64.b64encode(data).decode()}]))
    assert result["documents"] == 1 and result["bytes"] == len(data)
    words = len((" ".join(PARAGRAPHS) + " " + FILLER * 12).split())
    assert result["chunks"] >= words // 60 and result["chunks_written"] == result["chunks"]
    assert result["store_documents"] == result["chunks"]

    async def retrieved() -> list[dict]:  # the query path's meta event (no LLM here: it then errors)
        async for event in engine.stream(PDF_PHRASE, k=2, max_tokens=4):
            assert event.name == "meta", event
            return event.data["documents"]

    top = asyncio.run(retrieved())[0]
    assert top["meta"]["file_name"] == "runbook.pdf"
    assert "DCGM_FI_DEV_FB_USED" in top["content"]  # the PDF's own text, stored as a chunk
    every = engine.store.filter_documents()
    assert {d.meta["file_name"] for d in every} == {"runbook.pdf"}
    assert any("container_cpu_usage_seconds_total" in d.content for d in every)


# ---- upload validation (the engine's checks behind POST /ingest) ----------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def engine(tmp_path):
    return RagEngine(settings(tmp_path, max_upload_bytes=1000, max_upload_documents=3))


def code_of(engine: RagEngine, documents: list[dict]) -> str:
    with pytest.raises(RagError) as info:
        engine.validate_documents(documents)
    return info.value.code


def test_allowed_types_pass_with_their_mime_type(engine):
    streams = engine.validate_documents([
        {"name": "a.pdf", "content_base64": b64(b"%PDF-1.4 tiny")}, {"name": "b.md", "content": "# b"},
        {"name": "c.HTML", "content": "<p>c</p>"}])
    assert [s.mime_type for s in streams] == ["application/pdf", "text/markdown", "text/html"]
    assert streams[0].data == b"%PDF-1.4 tiny" and streams[0].meta == {"file_name": "a.pdf"}


@pytest.mark.parametrize("doc", [
    {"name": "tool.exe", "content_base64": b64(b"MZ")},
    {"name": "no-suffix", "content": "text"},
    {"name": "a.txt", "content": "text", "mime_type": "application/zip"},  # an explicit type wins
    {"name": "sheet.docx", "content_base64": b64(b"PK")},
])
def test_other_types_are_refused(engine, doc):
    assert code_of(engine, [doc]) == "unsupported_type"


def test_size_limit_is_per_document_in_bytes(engine):
    engine.validate_documents([{"name": "a.txt", "content": "x" * 1000}])  # at the limit
    assert code_of(engine, [{"name": "a.txt", "content": "x" * 1001}]) == "too_large"
    assert code_of(engine, [{"name": "a.txt", "content": "é" * 501}]) == "too_large"  # 1002 bytes in UTF-8
    assert code_of(engine, [{"name": "a.pdf", "content_base64": b64(b"x" * 1001)}]) == "too_large"


def test_count_limit_and_empty_requests(engine):
    docs = [{"name": f"{i}.txt", "content": "x"} for i in range(4)]
    assert len(engine.validate_documents(docs[:3])) == 3
    assert code_of(engine, docs) == "too_many_documents"
    assert code_of(engine, []) == "empty_corpus"


def test_content_must_be_given_and_base64_must_decode(engine):
    assert code_of(engine, [{"name": "a.txt"}]) == "bad_document"
    with pytest.raises(binascii.Error):  # a ValueError: /ingest answers 400 bad_document
        engine.validate_documents([{"name": "a.pdf", "content_base64": "not base64!"}])
