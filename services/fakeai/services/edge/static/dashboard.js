// The FakeAI Streams dashboard: a client of the edge's durable log.
//
// Everything live arrives as SSE read with fetch() and a stream reader (so an
// "Authorization: Bearer" header can go with it, which EventSource cannot send):
//   - GET /v1/dashboard/events: running streams and consumer groups;
//   - GET /v1/streams/{id}?pace=...: one stream, replayed at its recorded pace, cut and resumed
//     with Last-Event-ID.
// The latency charts read GET /v1/metrics/series (JSON): again when streams finish, and every
// CHART_REFRESH_MS so the time axis moves. No library and no build step: ES modules served by
// the edge (api.js, charts.js, stream.js), the charts SVG drawn by charts.js.

import {
  $,
  askForKey,
  cell,
  getJSON,
  notice,
  readSSE,
  setStatus,
  setupKeyForm,
  showKeyForm,
  sleep,
} from "./api.js";
import { renderCharts } from "./charts.js";
import { closeStream, openStream, setupStreamView } from "./stream.js";

const CHART_REFRESH_MS = 15000;
const FINISHED_ROW_MS = 8000; // a finished stream stays listed this long

// ---------------------------------------------------------------- running streams

const live = { rows: new Map(), clockSkewMs: 0 };

function onFeedEvent(block) {
  if (block.data === null) return;
  const body = JSON.parse(block.data);
  if (body.now_ms) live.clockSkewMs = body.now_ms - Date.now();
  switch (block.event) {
    case "snapshot":
      live.rows.clear();
      body.streams.forEach((row) => live.rows.set(row.id, row));
      setStatus($("#feed-status"), "live", "live");
      renderStreams();
      break;
    case "streams": {
      let finished = false;
      for (const row of body.streams) {
        if (row.status !== "running") {
          row.endedAt = Date.now();
          finished = true;
        }
        live.rows.set(row.id, row);
      }
      renderStreams();
      if (finished) {
        // The metrics consumer folds a finished stream within about a second.
        scheduleSeries(1200);
        scheduleSeries(4000);
      }
      break;
    }
    case "groups":
      renderGroups(body.groups);
      break;
    case "error":
      setStatus($("#feed-status"), "error", body.error ? body.error.code : "error");
      break;
    default:
      break;
  }
}

async function runFeed() {
  let backoff = 500;
  for (;;) {
    try {
      await readSSE("/v1/dashboard/events", { onEvent: onFeedEvent });
      backoff = 500; // ended on purpose (its time was up): reconnect at once
      setStatus($("#feed-status"), "connecting", "reconnecting…");
      continue;
    } catch (error) {
      if (error.status === 401) {
        setStatus($("#feed-status"), "error", "API key needed");
        await askForKey();
        continue;
      }
      setStatus($("#feed-status"), "error", `offline: ${error.message}`);
    }
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 10000);
    setStatus($("#feed-status"), "connecting", "reconnecting…");
  }
}
function formatAge(ms) {
  const s = Math.max(0, ms / 1000);
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  return `${(s / 3600).toFixed(1)} h`;
}

function renderStreams() {
  const now = Date.now();
  for (const [id, row] of live.rows) {
    if (row.endedAt && now - row.endedAt > FINISHED_ROW_MS) live.rows.delete(id);
  }
  const rows = [...live.rows.values()].sort((a, b) => b.created_ms - a.created_ms);
  const tbody = $("#streams tbody");
  tbody.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.dataset.streamId = row.id;
    tr.dataset.status = row.status;
    const link = document.createElement("a");
    link.href = `#stream=${encodeURIComponent(row.id)}`;
    link.textContent = row.id;
    link.className = "mono";
    cell(tr, "").appendChild(link);
    cell(tr, row.model || "?");
    cell(tr, String(row.tokens), "num tokens");
    cell(tr, String(row.chunks), "num");
    const end = row.endedAt ? row.endedAt + live.clockSkewMs : now + live.clockSkewMs;
    cell(tr, formatAge(end - row.created_ms), "num");
    cell(tr, row.error_code ? `${row.status} (${row.error_code})` : row.status);
    tbody.appendChild(tr);
  }
  const running = rows.filter((r) => r.status === "running" || r.status === "queued").length;
  $("#running-count").textContent = String(running);
  $("#streams-empty").hidden = rows.length > 0;
}

// ---------------------------------------------------------------- consumer groups

function renderGroups(groups) {
  const tbody = $("#groups tbody");
  tbody.replaceChildren();
  for (const g of groups) {
    const tr = document.createElement("tr");
    tr.dataset.group = g.group;
    const role =
      g.stream === "requests" ? "producers" : g.group === "metrics" ? "metrics consumer" : "observer";
    cell(tr, g.stream);
    cell(tr, g.group, "mono");
    const tag = document.createElement("span");
    tag.className = "role";
    tag.textContent = role;
    cell(tr, "").appendChild(tag);
    cell(tr, String(g.consumers), "num");
    cell(tr, String(g.pending), "num");
    cell(tr, g.lag === null ? "unknown" : String(g.lag), "num lag");
    const parts = g.partitions
      .map((p) => `#${p.partition}: lag ${p.lag === null ? "?" : p.lag}, pending ${p.pending}`)
      .join("; ");
    cell(tr, parts, "mono");
    tbody.appendChild(tr);
  }
  $("#groups-empty").hidden = groups.length > 0;
}

// ---------------------------------------------------------------- latency charts

const seriesTimers = new Set();

function scheduleSeries(delayMs) {
  const timer = setTimeout(() => {
    seriesTimers.delete(timer);
    loadSeries();
  }, delayMs);
  seriesTimers.add(timer);
}

async function loadSeries() {
  const windowS = $("#window").value;
  try {
    const [ttft, itl] = await Promise.all(
      ["ttft", "itl"].map((m) => getJSON(`/v1/metrics/series?metric=${m}&window=${windowS}`)),
    );
    renderCharts(ttft, itl);
  } catch (error) {
    if (error.status === 401) showKeyForm("This server needs an API key.");
    else notice(`Latency series: ${error.message}`);
  }
}

function route() {
  const m = /^#stream=(.+)$/.exec(location.hash);
  if (m) {
    openStream(decodeURIComponent(m[1]));
    return;
  }
  closeStream();
  $("#stream-view").hidden = true;
  $("#overview").hidden = false;
}

// ---------------------------------------------------------------- start

function start() {
  setupKeyForm(loadSeries);
  setupStreamView();
  $("#window").addEventListener("change", loadSeries);
  window.addEventListener("hashchange", route);
  setInterval(renderStreams, 1000); // ages move on between feed events
  setInterval(loadSeries, CHART_REFRESH_MS);
  route();
  loadSeries();
  runFeed();
}

start();
