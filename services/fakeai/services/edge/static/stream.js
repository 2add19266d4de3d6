// The stream page: replays one stream through GET /v1/streams/{id}?pace=..., shows each
// event's arrival time, and cuts the connection and resumes it with Last-Event-ID, checking
// that the resumed events follow the last one seen with no gap and no repeat.

import { $, cell, formatMs, getJSON, readSSE, setStatus, showKeyForm } from "./api.js";

const MAX_EVENT_ROWS = 2000;

const sv = {
  id: null,
  abort: null,
  t0: 0,
  lastArrival: 0,
  lastId: null,
  lastSeq: null,
  count: 0,
  text: "",
  resumedAfter: null,
  afterResume: 0,
  gaps: 0,
  repeats: 0,
};

function seqOf(id) {
  const m = /^\d+-(\d+)$/.exec(id || "");
  return m ? Number(m[1]) : null;
}

function chunkText(obj) {
  let out = "";
  for (const choice of obj.choices || []) {
    if (choice.delta && typeof choice.delta.content === "string") out += choice.delta.content;
    if (choice.message && typeof choice.message.content === "string") out += choice.message.content;
    if (typeof choice.text === "string") out += choice.text;
  }
  return out;
}

function addEventRow(id, content, resumed) {
  const now = performance.now() - sv.t0;
  const gap = sv.count ? now - sv.lastArrival : now;
  sv.lastArrival = now;
  sv.count += 1;
  $("#sv-count").textContent = String(sv.count);
  if (sv.count > MAX_EVENT_ROWS) return;
  const tr = document.createElement("tr");
  if (resumed) tr.className = "resumed";
  cell(tr, String(sv.count), "num");
  cell(tr, now.toFixed(1), "num");
  cell(tr, gap.toFixed(1), "num");
  cell(tr, id || "", "mono");
  cell(tr, content, "mono");
  $("#sv-events tbody").appendChild(tr);
}

function onStreamEvent(block) {
  if (block.data === null) return; // the priming event: a position, no data
  const seq = seqOf(block.id);
  if (seq !== null) {
    if (sv.lastSeq !== null && seq <= sv.lastSeq) sv.repeats += 1;
    else if (sv.lastSeq !== null && seq !== sv.lastSeq + 1) sv.gaps += 1;
    sv.lastSeq = seq;
    sv.lastId = block.id;
  }
  const resumed = sv.resumedAfter !== null && sv.afterResume === 0;
  if (sv.resumedAfter !== null) sv.afterResume += 1;
  if (block.data === "[DONE]") {
    addEventRow(block.id, "[DONE]", resumed);
    return;
  }
  const obj = JSON.parse(block.data);
  if (obj.error) {
    addEventRow(block.id, `error: ${obj.error.code}: ${obj.error.message}`, resumed);
    return;
  }
  const text = chunkText(obj);
  sv.text += text;
  $("#sv-text").textContent = sv.text;
  addEventRow(block.id, JSON.stringify(text), resumed);
}

function showCheck() {
  const el = $("#sv-check");
  if (sv.resumedAfter === null) {
    el.textContent = "";
    delete el.dataset.ok;
    return;
  }
  const ok = sv.gaps === 0 && sv.repeats === 0;
  el.dataset.ok = String(ok);
  el.textContent = ok
    ? `Resumed after ${sv.resumedAfter}: ${sv.afterResume} events, no gap, no duplicate.`
    : `Resumed after ${sv.resumedAfter}: ${sv.gaps} gaps, ${sv.repeats} repeated events.`;
}

async function replay(resume) {
  if (sv.abort) sv.abort.abort();
  const controller = new AbortController();
  sv.abort = controller;
  const headers = {};
  if (resume && sv.lastId) {
    headers["Last-Event-ID"] = sv.lastId;
    sv.resumedAfter = sv.lastId;
    sv.afterResume = 0;
  } else {
    Object.assign(sv, { t0: performance.now(), lastArrival: 0, lastId: null, lastSeq: null });
    Object.assign(sv, { count: 0, text: "", resumedAfter: null, afterResume: 0, gaps: 0, repeats: 0 });
    $("#sv-events tbody").replaceChildren();
    $("#sv-text").textContent = "";
    $("#sv-count").textContent = "0";
  }
  showCheck();
  $("#sv-cut").disabled = false;
  $("#sv-resume").disabled = true;
  setStatus($("#sv-state"), "live", resume ? "resumed" : "replaying");
  const pace = encodeURIComponent($("#sv-pace").value);
  try {
    await readSSE(`/v1/streams/${encodeURIComponent(sv.id)}?pace=${pace}`, {
      headers,
      signal: controller.signal,
      onEvent: onStreamEvent,
    });
    setStatus($("#sv-state"), "done", "ended");
    $("#sv-resume").disabled = true;
  } catch (error) {
    if (controller.signal.aborted) {
      if (sv.abort !== controller) return; // replaced by a newer replay
      setStatus($("#sv-state"), "cut", `cut after ${sv.lastId || "the start"}`);
      $("#sv-resume").disabled = false;
    } else {
      if (error.status === 401) showKeyForm("This server needs an API key.");
      setStatus($("#sv-state"), "error", error.message);
      $("#sv-resume").disabled = sv.lastId === null;
    }
  } finally {
    if (sv.abort === controller) {
      $("#sv-cut").disabled = true;
      showCheck();
    }
  }
}

async function loadInfo(id) {
  const dl = $("#sv-info");
  dl.replaceChildren();
  try {
    const info = await getJSON(`/v1/streams/${encodeURIComponent(id)}/info`);
    const t = info.timings || {};
    const rows = [
      ["status", info.status],
      ["model", info.model],
      ["endpoint", info.endpoint],
      ["entries", info.chunks],
      ["created", new Date(info.created_ms).toLocaleString()],
      ["first chunk after", t.first_chunk_at && t.accepted_at ? formatMs(t.first_chunk_at - t.accepted_at) : "—"],
      ["duration", t.finished_at && t.accepted_at ? formatMs(t.finished_at - t.accepted_at) : "running"],
      ["finish reason", info.finish_reason || "—"],
      ["completion tokens", info.usage ? info.usage.completion_tokens : "—"],
    ];
    for (const [k, v] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v === null || v === undefined ? "—" : String(v);
      dl.append(dt, dd);
    }
  } catch (error) {
    if (error.status === 401) showKeyForm("This server needs an API key.");
    const dd = document.createElement("dd");
    dd.textContent = error.message;
    dl.append(dd);
  }
}

export function openStream(id) {
  sv.id = id;
  $("#overview").hidden = true;
  $("#stream-view").hidden = false;
  $("#sv-id").textContent = id;
  loadInfo(id);
  replay(false);
}

export function closeStream() {
  if (sv.abort) sv.abort.abort();
  sv.abort = null;
}

export function setupStreamView() {
  $("#sv-replay").addEventListener("click", () => replay(false));
  $("#sv-resume").addEventListener("click", () => replay(true));
  $("#sv-cut").addEventListener("click", () => {
    if (sv.abort) sv.abort.abort();
  });
}
