// The chat page: upload documents, ask a question, watch the answer stream, and see the time to first
// token and the total time as measured here, in the browser (docs/service.md, docs/metrics.md).
//
// Every question leaves a record in window.ragbenchChat.runs with raw timestamps only (milliseconds
// of performance.now()); figures are computed from them. The browser vantage point of a benchmark
// (workload/browser) drives this page and reads those records.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = { runs: [], controller: null };
  window.ragbenchChat = state;

  function authHeaders() {
    const token = $("token").value.trim();
    return token ? { Authorization: "Bearer " + token } : {};
  }

  function setStatus(el, stateName, text) {
    el.dataset.state = stateName;
    el.textContent = text;
  }

  function fmt(ms) {
    return typeof ms === "number" && isFinite(ms) ? ms.toFixed(1) : "–";
  }

  // ---- upload -----------------------------------------------------------------------------------

  function toBase64(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  async function errorText(response) {
    // The service answers errors as {"detail": {"code": ..., "message": ...}}.
    let body = "";
    try {
      body = await response.text();
      const detail = JSON.parse(body).detail;
      if (detail && detail.code) return `${response.status} ${detail.code}: ${detail.message || ""}`;
    } catch (e) { /* not JSON */ }
    return `${response.status} ${response.statusText} ${body.slice(0, 200)}`;
  }

  async function upload(event) {
    event.preventDefault();
    const status = $("upload-status");
    const files = Array.from($("files").files);
    if (!files.length) {
      setStatus(status, "error", "choose one or more files first");
      return;
    }
    setStatus(status, "busy", `uploading ${files.length} file(s)…`);
    try {
      const documents = await Promise.all(files.map(async (f) => (
        { name: f.name, content_base64: toBase64(await f.arrayBuffer()) })));
      const response = await fetch("/ingest", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...authHeaders() },
        body: JSON.stringify({ documents }),
      });
      if (!response.ok) {
        setStatus(status, "error", "upload failed: " + await errorText(response));
        return;
      }
      const r = await response.json();
      setStatus(status, "done", `ingested ${r.documents} document(s), ${r.chunks} chunk(s)`);
    } catch (e) {
      setStatus(status, "error", "upload failed: " + e.message);
    }
  }

  // ---- SSE --------------------------------------------------------------------------------------

  // Incremental parser of text/event-stream: tolerates comments, CRLF and events split across reads.
  function sseParser() {
    let buffer = "";
    return function feed(text) {
      buffer += text.replace(/\r\n?/g, "\n");
      const events = [];
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") name = value;
          else if (field === "data") data.push(value);
        }
        if (data.length) events.push({ name, data: data.join("\n") });
      }
      return events;
    };
  }

  // ---- one question -----------------------------------------------------------------------------

  function newRecord(question) {
    return {
      index: state.runs.length, prompt_chars: question.length,
      t_sent: null, t_first_byte: null, t_first_token: null, token_times: [], token_counts: [], t_end: null,
      http_status: null, request_id: null, server_request_id: null, replica_id: null, model_id: null, k: null,
      output_tokens: null, output_tokens_source: null, server_timings: {}, tokens_per_sec: null,
      documents: [], answer: "", error_code: null, server_error_code: null, error_message: null, finished: false,
    };
  }

  function clearResult() {
    for (const id of ["client-ttft", "client-total", "client-tokens", "server-ttft", "server-total",
                      "server-tokens"]) $(id).textContent = "–";
    $("server-stages").textContent = "";
    $("ids").textContent = "";
    $("answer").textContent = "";
    $("sources").replaceChildren();
    $("error").hidden = true;
    $("error").textContent = "";
  }

  function showSources(documents) {
    const list = $("sources");
    list.replaceChildren();
    for (const d of documents || []) {
      const item = document.createElement("li");
      const meta = d.meta || {};
      const title = document.createElement("strong");
      title.textContent = meta.file_name || meta.file_path || meta.name || d.id || "document";
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = typeof d.score === "number" ? ` score ${d.score.toFixed(3)}` : "";
      const preview = document.createElement("p");
      preview.textContent = d.content || "";
      item.append(title, score, preview);
      list.append(item);
    }
  }

  function showTimings(rec) {
    const ttft = rec.t_first_token === null ? null : rec.t_first_token - rec.t_sent;
    const total = rec.t_end === null ? null : rec.t_end - rec.t_sent;
    $("client-ttft").textContent = fmt(ttft);
    $("client-total").textContent = fmt(total);
    const events = rec.token_counts.reduce((a, b) => a + b, 0);
    $("client-tokens").textContent = rec.token_times.length ? `${events} (token events)` : "–";
    const t = rec.server_timings || {};
    $("server-ttft").textContent = fmt(t.ttft_ms);
    $("server-total").textContent = fmt(t.total_ms);
    $("server-tokens").textContent = rec.output_tokens_source === "server_usage"
      ? `${rec.output_tokens}${rec.tokens_per_sec ? ` (${rec.tokens_per_sec.toFixed(1)} tok/s)` : ""}` : "–";
    const stages = ["embed_ms", "retrieve_ms", "prompt_ms", "generate_ms"]
      .filter((k) => typeof t[k] === "number").map((k) => `${k.replace("_ms", "")} ${t[k].toFixed(1)} ms`);
    $("server-stages").textContent = stages.length ? "server stages: " + stages.join(" · ") : "";
    $("ids").textContent = [rec.request_id && "request " + rec.request_id,
                            rec.replica_id && "replica " + rec.replica_id,
                            rec.model_id && "model " + rec.model_id].filter(Boolean).join(" · ");
  }

  function fail(rec, code, message, serverCode) {
    if (rec.error_code === null) {
      rec.error_code = code;
      rec.server_error_code = serverCode || null;
      rec.error_message = String(message).slice(0, 500);
    }
    if (rec.t_end === null) rec.t_end = performance.now();
  }

  function finish(rec) {
    rec.finished = true;
    state.controller = null;
    $("ask-button").disabled = false;
    $("stop-button").disabled = true;
    showTimings(rec);
    const status = $("status");
    if (rec.error_code) {
      const err = $("error");
      err.hidden = false;
      err.textContent = `error: ${rec.server_error_code || rec.error_code}: ${rec.error_message || ""}`;
      setStatus(status, "error", `error after ${fmt(rec.t_end - rec.t_sent)} ms`);
    } else {
      setStatus(status, "done", `done in ${fmt(rec.t_end - rec.t_sent)} ms`);
    }
  }

  function onEvent(rec, name, raw) {
    let data;
    try {
      data = JSON.parse(raw);
    } catch (e) {
      fail(rec, "malformed_event", `${name} event is not JSON`);
      return true;
    }
    const now = performance.now();
    if (name === "meta") {
      rec.request_id = data.request_id || null;
      rec.replica_id = data.replica_id || null;
      rec.model_id = data.model_id || null;
      rec.k = data.k ?? null;
      rec.documents = data.documents || [];
      showSources(rec.documents);
    } else if (name === "token") {
      const text = typeof data.text === "string" ? data.text : "";
      if (!text) return false;
      if (rec.t_first_token === null) {
        rec.t_first_token = now;
        $("client-ttft").textContent = fmt(now - rec.t_sent);
        setStatus($("status"), "streaming", "streaming…");
      }
      rec.token_times.push(now);
      rec.token_counts.push(Number.isInteger(data.tokens) && data.tokens > 0 ? data.tokens : 1);
      rec.answer += text;
      $("answer").textContent = rec.answer;
    } else if (name === "done") {
      rec.t_end = now;
      rec.server_request_id = data.request_id || null;
      rec.server_timings = data.timings || {};
      rec.tokens_per_sec = typeof data.tokens_per_sec === "number" ? data.tokens_per_sec : null;
      if (Number.isInteger(data.token_count)) {
        rec.output_tokens = data.token_count;
        rec.output_tokens_source = "server_usage";
      } else {
        rec.output_tokens = rec.token_counts.reduce((a, b) => a + b, 0);
        rec.output_tokens_source = "token_events";
      }
      if (data.documents && !rec.documents.length) showSources(rec.documents = data.documents);
      return true;
    } else if (name === "error") {
      rec.server_request_id = data.request_id || null;
      fail(rec, "server_error", data.message || "the server reported an error", data.code || "unknown");
      return true;
    }
    return false;
  }

  async function ask(event) {
    event.preventDefault();
    if (state.controller) return;  // one question at a time
    const question = $("question").value;
    const body = { query: question, max_tokens: Number($("max-tokens").value) || 64,
                   ignore_eos: $("ignore-eos").checked };
    const k = Number($("k").value);
    if (k) body.k = k;
    const timeoutMs = (Number($("timeout-s").value) || 120) * 1000;
    const rec = newRecord(question);
    state.runs.push(rec);
    clearResult();
    $("ask-button").disabled = true;
    $("stop-button").disabled = false;
    setStatus($("status"), "waiting", "waiting for the first token…");

    const controller = new AbortController();
    state.controller = controller;
    let reason = null;  // why the request was aborted, when it was
    const timer = setTimeout(() => { reason = "timeout"; controller.abort(); }, timeoutMs);
    controller.stopByUser = () => { reason = "stopped"; controller.abort(); };
    const payload = JSON.stringify(body);
    const headers = { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders() };
    try {
      rec.t_sent = performance.now();
      const response = await fetch("/query/stream", { method: "POST", headers, body: payload,
                                                       signal: controller.signal, cache: "no-store" });
      rec.t_first_byte = performance.now();
      rec.http_status = response.status;
      if (!response.ok) {
        fail(rec, "http_error", await errorText(response));
        return;
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const feed = sseParser();
      let last = false;
      while (!last) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const ev of feed(decoder.decode(value, { stream: true }))) {
          if (onEvent(rec, ev.name, ev.data)) { last = true; break; }
        }
      }
      if (last) {
        reader.cancel().catch(() => {});
      } else {
        fail(rec, "stream_incomplete", "the stream ended without a done or error event");
      }
    } catch (e) {
      if (reason === "timeout") {
        fail(rec, rec.t_first_token === null ? "first_token_timeout" : "total_timeout",
             `no ${rec.t_first_token === null ? "first token" : "end of the answer"} after ${timeoutMs / 1000} s`);
      } else if (reason === "stopped") {
        fail(rec, "client_error", "stopped by the user");
      } else {
        fail(rec, rec.t_first_byte === null ? "connect_error" : "stream_incomplete",
             "the connection failed: " + e.message);
      }
    } finally {
      clearTimeout(timer);
      if (rec.t_end === null) rec.t_end = performance.now();
      finish(rec);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("token").value = sessionStorage.getItem("ragbench-token") || "";
    $("token").addEventListener("change", () => sessionStorage.setItem("ragbench-token", $("token").value));
    $("upload-form").addEventListener("submit", upload);
    $("ask-form").addEventListener("submit", ask);
    $("stop-button").addEventListener("click", () => state.controller && state.controller.stopByUser());
    document.body.dataset.ready = "true";
  });
})();
