// The playground: one conversation streamed into two or three columns at once, each from its own model, through
// POST /api/playground/stream (server-sent events: start, token..., then end or error). Each column keeps its own
// replies, so a second turn continues each model's own conversation. The setup lives in the address bar.

const form = document.getElementById("playground");
const streamUrl = form.dataset.streamUrl;
const csrf = form.dataset.csrf;
const maxStop = Number(form.dataset.maxStop) || 4;
const el = (id) => document.getElementById(id);
const promptBox = el("pg-prompt");
const sendButton = el("pg-send");
const stopButton = el("pg-stop-button");
const problem = el("pg-problem");
const shareBox = el("pg-share-url");
const NUMBER_FIELDS = { max_tokens: "pg-max-tokens", temperature: "pg-temperature", top_p: "pg-top-p", seed: "pg-seed" };

const columns = [...document.querySelectorAll(".pg-column")].map((section) => {
  const i = section.dataset.index;
  return {
    section, select: el(`pg-model-${i}`), transcript: el(`pg-transcript-${i}`), error: el(`pg-error-${i}`),
    ttft: el(`pg-ttft-${i}`), serviceTtft: el(`pg-service-ttft-${i}`), rate: el(`pg-rate-${i}`),
    tokens: el(`pg-tokens-${i}`), finish: el(`pg-finish-${i}`), rendered: el(`pg-rendered-text-${i}`),
    replies: [],
  };
});
const turns = []; // the user's messages, shared by every column
let controller = null;

const shown = () => columns.filter((c) => !c.section.hidden);

/** The stop sequences typed one per line, with "\n" standing for a line break. */
function stopSequences() {
  return el("pg-stop").value.split("\n").filter((line) => line.length > 0)
    .map((line) => line.replaceAll("\\n", "\n")).slice(0, maxStop);
}

/** The sampling settings as the stream takes them; an empty field is left to the server's default. */
function sampling() {
  const values = { stop: stopSequences() };
  for (const [key, id] of Object.entries(NUMBER_FIELDS)) {
    const raw = el(id).value.trim();
    const number = Number(raw);
    // Not a number: sent as typed, so the server names the field.
    if (raw !== "") values[key] = Number.isNaN(number) ? raw : number;
  }
  return values;
}

/** A column's conversation: each user turn, followed by this column's own reply to it (when it gave one). */
function conversation(column) {
  const messages = [];
  turns.forEach((content, n) => {
    messages.push({ role: "user", content });
    if (column.replies[n]) messages.push({ role: "assistant", content: column.replies[n] });
  });
  return messages;
}

/** The setup as a query string: what a shared link reproduces. */
function setupQuery() {
  const query = new URLSearchParams();
  for (const column of shown()) if (column.select.value) query.append("model", column.select.value);
  const system = el("pg-system").value;
  if (system) query.set("system", system);
  for (const [key, id] of Object.entries(NUMBER_FIELDS)) query.set(key, el(id).value.trim());
  for (const line of el("pg-stop").value.split("\n").filter(Boolean).slice(0, maxStop)) query.append("stop", line);
  const first = turns[0] ?? promptBox.value;
  if (first) query.set("prompt", first);
  return query;
}

function syncAddress() {
  history.replaceState(null, "", `${location.pathname}?${setupQuery()}`);
  shareBox.value = location.href;
}

function addTurn(column, role, text) {
  const turn = document.createElement("p");
  turn.className = `pg-turn ${role}`;
  turn.textContent = text;
  column.transcript.append(turn);
  column.transcript.scrollTop = column.transcript.scrollHeight;
  return turn;
}

function showError(column, message) {
  column.error.textContent = message;
  column.error.hidden = false;
}

function resetFigures(column) {
  column.error.hidden = true;
  for (const key of ["ttft", "serviceTtft", "rate", "tokens", "finish"]) column[key].textContent = "—";
}

/** An error answer's message (the API's {"error": {message, field}}), whatever its body. */
async function errorMessage(response) {
  try {
    const { error } = await response.json();
    return error.message || `The studio answered ${response.status}.`;
  } catch {
    return `The studio answered ${response.status} ${response.statusText}.`;
  }
}

/** The server-sent events of a response body, parsed as they arrive. */
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) yield { name, data: JSON.parse(data.join("\n")) };
    }
  }
}

/** Stream one column's answer into its box; resolves to the reply text (partial if stopped, "" if none). */
async function streamColumn(column, signal) {
  resetFigures(column);
  const reply = addTurn(column, "assistant", "");
  reply.classList.add("streaming");
  const started = performance.now();
  let text = "";
  const body = { model: column.select.value, system: el("pg-system").value, messages: conversation(column),
    ...sampling() };
  try {
    const response = await fetch(streamUrl, {
      method: "POST", signal, body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", "X-CSRF-Token": csrf },
    });
    if (!response.ok) {
      showError(column, await errorMessage(response));
      return "";
    }
    for await (const { name, data } of events(response)) {
      if (name === "start") column.rendered.textContent = data.rendered_prompt;
      else if (name === "token") {
        if (!text) column.ttft.textContent = `${Math.round(performance.now() - started)} ms`;
        text += data.text;
        reply.textContent = text;
        column.transcript.scrollTop = column.transcript.scrollHeight;
      } else if (name === "end") {
        column.serviceTtft.textContent = `${Math.round(data.ttft_ms)} ms`;
        column.rate.textContent = data.tokens_per_s.toFixed(1);
        column.tokens.textContent = `${data.completion_tokens} (prompt ${data.prompt_tokens})`;
        column.finish.textContent = data.finish_reason;
      } else if (name === "error") showError(column, data.message);
    }
  } catch (error) {
    if (signal.aborted) column.finish.textContent = "stopped";
    else showError(column, `The stream broke off: ${error.message}. Is the studio still running?`);
  } finally {
    reply.classList.remove("streaming");
    if (!text) {
      reply.classList.add("empty");
      reply.textContent = "(no answer)";
    }
  }
  return text;
}

async function send(event) {
  event.preventDefault();
  const message = promptBox.value;
  if (controller || !message.trim()) return;
  problem.hidden = true;
  const ready = shown().filter((c) => c.select.value && !c.select.selectedOptions[0]?.disabled);
  for (const column of shown()) if (!ready.includes(column)) showError(column, "Pick a model you may use.");
  if (!ready.length) return;
  turns.push(message);
  syncAddress();
  controller = new AbortController();
  sendButton.disabled = true;
  stopButton.disabled = false;
  for (const column of ready) addTurn(column, "user", message);
  promptBox.value = "";
  const replies = await Promise.all(ready.map((column) => streamColumn(column, controller.signal)));
  ready.forEach((column, n) => { column.replies[turns.length - 1] = replies[n]; });
  controller = null;
  sendButton.disabled = false;
  stopButton.disabled = true;
  promptBox.focus();
}

function reset() {
  controller?.abort();
  turns.length = 0;
  for (const column of columns) {
    column.replies = [];
    column.transcript.replaceChildren();
    resetFigures(column);
  }
  syncAddress();
}

function setThirdColumn(on) {
  columns[2].section.hidden = !on;
  el("pg-add-column").hidden = on;
  el("pg-remove-column").hidden = !on;
  syncAddress();
}

form.addEventListener("submit", send);
form.addEventListener("change", syncAddress);
form.addEventListener("input", (event) => { if (event.target !== promptBox || !turns.length) syncAddress(); });
promptBox.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
});
stopButton.addEventListener("click", () => controller?.abort());
el("pg-reset").addEventListener("click", reset);
el("pg-add-column").addEventListener("click", () => setThirdColumn(true));
el("pg-remove-column").addEventListener("click", () => setThirdColumn(false));
el("pg-copy").addEventListener("click", async () => {
  shareBox.select();
  try {
    await navigator.clipboard.writeText(shareBox.value);
  } catch {
    document.execCommand?.("copy"); // no clipboard API off https: the selected text is copied the old way
  }
});
el("pg-add-column").hidden = !columns[2].section.hidden;
el("pg-remove-column").hidden = columns[2].section.hidden;
shareBox.value = location.href;
