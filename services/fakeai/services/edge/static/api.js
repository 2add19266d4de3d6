// HTTP, SSE over fetch(), the API key, and small DOM helpers shared by the dashboard's views.
//
// SSE is read with fetch() and a stream reader, not EventSource, so an "Authorization: Bearer"
// header can go with it; the key is asked for once and kept in sessionStorage (this tab only).

const KEY_STORE = "fakeai.apiKey";

export const $ = (selector) => document.querySelector(selector);
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- HTTP and SSE

export function authHeaders(extra) {
  const headers = { ...extra };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

export async function httpError(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (_) {
    // not JSON: keep the status line
  }
  const error = new Error(message);
  error.status = response.status;
  return error;
}

export async function getJSON(url) {
  const response = await fetch(url, { headers: authHeaders({ Accept: "application/json" }) });
  if (!response.ok) throw await httpError(response);
  return response.json();
}

// Reads an event stream (WHATWG HTML, "Interpreting an event stream") and calls onEvent with
// {event, data, id} for every block: data is null for a block without data lines (the
// priming event: an id and retry only). Resolves when the server ends the response.
export async function readSSE(url, { headers = {}, signal, onEvent }) {
  const response = await fetch(url, {
    headers: authHeaders({ Accept: "text/event-stream", ...headers }),
    signal,
    cache: "no-store",
  });
  if (!response.ok) throw await httpError(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let block = { event: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      let line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (block.data.length || block.id !== null) {
          onEvent({
            event: block.event,
            data: block.data.length ? block.data.join("\n") : null,
            id: block.id,
          });
        }
        block = { event: "message", data: [], id: null };
        continue;
      }
      if (line.startsWith(":")) continue; // a comment: the heartbeat
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") block.data.push(text);
      else if (field === "event") block.event = text;
      else if (field === "id") block.id = text;
    }
  }
}

// ---------------------------------------------------------------- API key

let keyWaiters = [];

export function showKeyForm(message) {
  $("#key-form").hidden = false;
  if (message) notice(message);
  $("#key-input").focus();
}

export function askForKey() {
  showKeyForm("This server needs an API key.");
  return new Promise((resolve) => keyWaiters.push(resolve));
}

export function notice(text) {
  const el = $("#notice");
  el.textContent = text || "";
  el.hidden = !text;
}

export function setupKeyForm(onKey) {
  $("#key-button").addEventListener("click", () => {
    const form = $("#key-form");
    form.hidden = !form.hidden;
  });
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#key-input").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    $("#key-input").value = "";
    $("#key-form").hidden = true;
    notice("");
    const waiters = keyWaiters;
    keyWaiters = [];
    waiters.forEach((resolve) => resolve());
    onKey();
  });
}

export function setStatus(el, state, text) {
  el.dataset.state = state;
  el.textContent = text;
}

export function cell(tr, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  tr.appendChild(td);
  return td;
}


export function formatMs(seconds) {
  const ms = seconds * 1000;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(1)} ms`;
}

