// The latency charts: p50/p90/p99 of one metric of one model over time, drawn as SVG (no
// library). Data: GET /v1/metrics/series, one point per step where samples exist.

import { $, formatMs } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const QUANTILES = ["p50", "p90", "p99"];

function svg(name, attrs, parent) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

function formatTime(unixS, spanS) {
  const d = new Date(unixS * 1000);
  if (spanS > 86400) {
    return d.toLocaleString([], { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
  }
  const opts = { hour: "2-digit", minute: "2-digit" };
  if (spanS <= 3600) opts.second = "2-digit";
  return d.toLocaleTimeString([], opts);
}

// One chart: p50/p90/p99 of one metric of one model, x = time, y = latency.
function drawChart(title, model, metric, series) {
  const W = 600;
  const H = 210;
  const M = { left: 56, right: 12, top: 20, bottom: 24 };
  const points = (series.models[model] || []).filter((p) => p.count > 0);
  const root = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    "data-model": model,
    "data-metric": metric,
    "data-points": points.length,
    role: "img",
    "aria-label": `${title} of ${model}`,
  });
  svg("text", { x: M.left, y: 13, class: "title" }, root).textContent = title;
  const x0 = series.start;
  const x1 = series.end;
  const top = Math.max(1e-6, ...points.map((p) => p.p99 || 0)) * 1.15;
  const sx = (t) => M.left + ((t - x0) / (x1 - x0)) * (W - M.left - M.right);
  const sy = (v) => H - M.bottom - (v / top) * (H - M.top - M.bottom);
  for (let i = 0; i <= 4; i += 1) {
    const v = (top * i) / 4;
    svg("line", { x1: M.left, x2: W - M.right, y1: sy(v), y2: sy(v), class: "grid" }, root);
    svg("text", { x: M.left - 4, y: sy(v) + 3, "text-anchor": "end" }, root).textContent =
      formatMs(v);
  }
  for (let i = 0; i <= 3; i += 1) {
    const t = x0 + ((x1 - x0) * i) / 3;
    const anchor = i === 0 ? "start" : i === 3 ? "end" : "middle";
    svg("text", { x: sx(t), y: H - 8, "text-anchor": anchor }, root).textContent = formatTime(
      t,
      x1 - x0,
    );
  }
  svg("line", { x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom, class: "axis" }, root);
  svg("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, class: "axis" }, root);
  const half = series.step_s / 2; // a point stands for [t, t + step): draw it at its middle
  for (const q of QUANTILES) {
    const xy = points.map((p) => (p[q] === null ? null : [sx(Math.min(p.t + half, x1)), sy(p[q])]));
    const line = xy.filter((v) => v !== null);
    if (line.length > 1) {
      const d = line.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join("");
      svg("path", { d, class: q }, root);
    }
    points.forEach((p, i) => {
      if (xy[i] === null) return;
      const dot = svg("circle", { cx: xy[i][0], cy: xy[i][1], r: 2.6, class: `pt ${q}` }, root);
      svg("title", {}, dot).textContent =
        `${q} ${formatMs(p[q])} at ${formatTime(p.t, x1 - x0)} (${p.count} samples)`;
    });
  }
  return root;
}

export function renderCharts(ttft, itl) {
  const models = [...new Set([...Object.keys(ttft.models), ...Object.keys(itl.models)])]
    .filter((m) => (ttft.models[m] || []).length || (itl.models[m] || []).length)
    .sort();
  const box = $("#charts");
  box.replaceChildren();
  for (const model of models) {
    const card = document.createElement("div");
    card.className = "model-card";
    card.dataset.model = model;
    const h = document.createElement("h3");
    h.textContent = model;
    card.appendChild(h);
    const pair = document.createElement("div");
    pair.className = "pair";
    pair.appendChild(drawChart("Time to first token", model, "ttft", ttft));
    pair.appendChild(drawChart("Inter-token latency", model, "itl", itl));
    card.appendChild(pair);
    box.appendChild(card);
  }
  $("#charts-empty").hidden = models.length > 0;
}
