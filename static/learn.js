// The curator's page (/learn, docs/curation.md): the pool ranked by a query strategy, why the network
// is unsure of each proposed drawing (its contrast map and the neurons pulling each way), a 2-D map of
// the pool coloured by uncertainty, and moderation. Data from /learn/api/…; no state beyond the page.

import { css, diverging, sequential } from "./colormap.js";

const $ = (id) => document.getElementById(id);
const csrf = document.querySelector("meta[name=csrf-token]").content;
const SVG = "http://www.w3.org/2000/svg";

function make(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    location.assign("/learn/login");
    throw new Error("logged out");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ?? `HTTP ${response.status}`);
  return body;
}

/** Paint a stored drawing's strokes (canvas fractions) on a small canvas. */
function strokesCanvas(strokes, side = 84) {
  const canvas = make("canvas", { width: side, height: side, class: "learn-thumb", role: "img", "aria-label": "the drawing" });
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, side, side);
  context.strokeStyle = "#111827";
  context.lineWidth = side / 14;
  context.lineCap = context.lineJoin = "round";
  for (const stroke of strokes) {
    context.beginPath();
    stroke.forEach(([x, y], i) => (i ? context.lineTo(x * side, y * side) : context.moveTo(x * side, y * side)));
    if (stroke.length === 1) context.lineTo(stroke[0][0] * side + 0.5, stroke[0][1] * side);
    context.stroke();
  }
  return canvas;
}

/** A 28 × 28 map as a canvas: signed relevance on the diverging scale of its largest magnitude. */
function mapCanvas(rows, label) {
  const canvas = make("canvas", { width: 28, height: 28, class: "learn-map pixelated", role: "img", "aria-label": label });
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(28, 28);
  const scale = Math.max(1e-9, ...rows.flat().map(Math.abs));
  rows.flat().forEach((value, i) => {
    const [r, g, b] = diverging(value / scale);
    pixels.data.set([r, g, b, 255], i * 4);
  });
  context.putImageData(pixels, 0, 0);
  return canvas;
}

let pool = null;

async function refresh() {
  const strategy = $("strategy").value;
  const n = Math.min(50, Math.max(1, Number($("count").value) || 8));
  pool = await api(`/learn/api/pool?strategy=${encodeURIComponent(strategy)}&n=${n}`);
  $("pool-summary").textContent = `Waiting for a decision: ${pool.pool.length}. Confirmed or corrected: ${pool.labelled}. ` +
    `Model '${pool.model}'. ${strategy.replaceAll("_", " ")} proposes ${pool.proposed.length}.`;
  const byId = new Map(pool.pool.map((item) => [item.id, item]));
  $("proposed").replaceChildren(...pool.proposed.map((id) => proposedItem(byId.get(id))));
  drawMap(pool.map, new Set(pool.proposed));
}

function proposedItem(item) {
  const li = make("li", { class: "learn-item" });
  const button = make("button", { type: "button", "data-id": String(item.id) },
    `#${item.id}: visitor says ${item.label}, network reads ${item.prediction} ` +
    `(${Math.round(100 * item.probabilities[item.prediction])} %; margin ${item.uncertainty.margin.toFixed(2)})`);
  button.addEventListener("click", () => showDetail(item.id));
  li.append(button);
  return li;
}

async function showDetail(id) {
  const box = $("detail");
  box.replaceChildren(make("p", { class: "hint" }, "Explaining…"));
  const drawing = await api(`/learn/api/drawings/${id}`);
  const { contrast } = drawing;
  const figure = make("div", { class: "learn-figures" });
  figure.append(strokesCanvas(drawing.strokes, 140),
    mapCanvas(contrast.heatmap, `Why ${contrast.class} and not ${contrast.versus}: red for ${contrast.class}, blue for ${contrast.versus}`));
  const neurons = (list, side) => list.map(({ neuron, share }) => `neuron ${neuron} (${share.toFixed(2)})`).join(", ") || `none pull towards ${side}`;
  const moderation = make("div", { class: "buttons learn-moderate", "data-part": "moderate" });
  const correct = make("select", { "aria-label": "Correct label" });
  for (let digit = 0; digit <= 9; digit += 1) correct.append(make("option", { value: String(digit) }, String(digit)));
  correct.value = String(drawing.label);
  const act = (action, label) => moderate(id, action, label);
  const confirm = make("button", { type: "button", "data-action": "confirm" }, `Confirm ${drawing.label}`);
  const fix = make("button", { type: "button", "data-action": "correct" }, "Correct to");
  const reject = make("button", { type: "button", "data-action": "reject" }, "Reject");
  confirm.addEventListener("click", () => act("confirm"));
  fix.addEventListener("click", () => act("correct", Number(correct.value)));
  reject.addEventListener("click", () => act("reject"));
  moderation.append(confirm, fix, correct, reject);
  box.replaceChildren(
    make("p", {}, `Drawing #${id}. The visitor says ${drawing.label}; the network reads ${contrast.class}, ` +
      `then ${contrast.versus} (score difference ${contrast.difference.toFixed(2)}).`),
    figure,
    make("p", {}, `Pulling towards ${contrast.class}: ${neurons(contrast.toward, contrast.class)}.`),
    make("p", {}, `Pulling towards ${contrast.versus}: ${neurons(contrast.against, contrast.versus)}.`),
    moderation, make("p", { class: "hint", role: "status", id: "moderated" }));
}

async function moderate(id, action, label) {
  const body = JSON.stringify(label === undefined ? { action } : { action, label });
  const result = await api(`/learn/api/drawings/${id}`, {
    method: "POST", body, headers: { "content-type": "application/json", "x-csrf-token": csrf },
  });
  $("moderated").textContent = `Drawing #${result.id}: ${result.status}.`;
  await refresh();
}

function drawMap(points, proposed) {
  const size = 320;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("class", "learn-pool-map");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${points.length} drawings; proposed ones ringed`);
  for (const { id, x, y, uncertainty } of points) {
    const dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("cx", String(size / 2 + x * (size / 2 - 10)));
    dot.setAttribute("cy", String(size / 2 - y * (size / 2 - 10)));
    dot.setAttribute("r", proposed.has(id) ? "6" : "4");
    dot.setAttribute("fill", css(sequential(Math.min(1, uncertainty / 0.9))));
    if (proposed.has(id)) dot.setAttribute("stroke", "#d97706");
    dot.dataset.id = String(id);
    const title = document.createElementNS(SVG, "title");
    title.textContent = `#${id}, uncertainty ${uncertainty.toFixed(2)}`;
    dot.append(title);
    dot.addEventListener("click", () => showDetail(id));
    svg.append(dot);
  }
  $("map").replaceChildren(svg);
}

function failed(error) {
  $("pool-summary").textContent = `Could not load: ${error.message}`;
}

$("strategy").addEventListener("change", () => refresh().catch(failed));
$("count").addEventListener("change", () => refresh().catch(failed));
refresh().catch(failed);

// ---------- training rounds (python -m model_store learn): per held-out set, before → after ----------
function percent(value) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)} %`;
}

function confusionTable(matrix, caption) {
  const table = make("table", { class: "learn-confusion" });
  table.append(make("caption", {}, caption));
  const head = make("tr");
  head.append(make("th", { scope: "col" }, "true \\ read"), ...matrix.map((_, c) => make("th", { scope: "col" }, String(c))));
  table.append(head);
  matrix.forEach((row, t) => {
    const tr = make("tr");
    tr.append(make("th", { scope: "row" }, String(t)), ...row.map((count, c) => make("td", { class: c === t ? "hit" : "" }, String(count))));
    table.append(tr);
  });
  return table;
}

function roundItem(entry, serving) {
  const item = make("article", { class: "learn-round", "data-round": String(entry.round) });
  const title = entry.round === 0 ? "Shipped version" : `Round ${entry.round}: ${entry.drawings} visitor drawings`;
  item.append(make("h3", {}, `${title} · ${entry.sha256.slice(0, 12)}${entry.sha256 === serving ? " (serving)" : ""}`));
  for (const [set, e] of Object.entries(entry.evaluations)) {
    const details = make("details");
    details.append(make("summary", {}, `${set.replaceAll("_", " ")}: ${percent(e.before)} → ${percent(e.after)} ` +
      `(n = ${e.n}, noise ±${percent(e.noise)})${e.blocked ? " — blocked" : ""}`));
    const classes = make("p", {}, "Per class, before → after: " + e.per_class_before
      .map((before, c) => `${c}: ${percent(before)} → ${percent(e.per_class_after[c])}`).join(", "));
    details.append(classes);
    if (e.confusion_before) details.append(confusionTable(e.confusion_before, "Confusion before"), confusionTable(e.confusion_after, "Confusion after"));
    item.append(details);
  }
  if (entry.maps?.length) {
    const maps = make("div", { class: "learn-round-maps", "data-part": "round-maps" });
    for (const { id, label, old, new: after } of entry.maps) {
      const rows = (side) => {
        const values = side.heatmap.values.map((v) => v * side.heatmap.scale);
        return Array.from({ length: 28 }, (_, r) => values.slice(r * 28, r * 28 + 28));
      };
      const figure = make("figure", { class: "learn-round-map" });
      figure.append(mapCanvas(rows(old), `Drawing ${id}: LRP for ${label}, old version`),
        mapCanvas(rows(after), `Drawing ${id}: LRP for ${label}, new version`),
        make("figcaption", {}, `#${id}, a ${label}: p = ${percent(old.p_label)} → ${percent(after.p_label)}`));
      maps.append(figure);
    }
    item.append(make("p", { class: "hint" }, "LRP maps of the taught digit, old version | new version, for the round's drawings whose reading changed most:"), maps);
  }
  return item;
}

function roundStatus(running, last) {
  if (running) return "A round is running (a worker process; a minute or so)…";
  if (!last) return "";
  if (last.error) return `The last round failed: ${last.error.join(" ")}`;
  return last.promoted ? `The last round was promoted (round ${last.version.round}); servers switch within seconds.`
    : `The last round was not promoted: it would have dropped on ${last.blocked_by.join(", ")}.`;
}

async function loadRounds() {
  const { rounds, serving_sha256: serving, running, last } = await api("/learn/api/rounds");
  $("rounds").replaceChildren(...rounds.map((entry) => roundItem(entry, serving)));
  $("round-status").textContent = roundStatus(running, last);
  $("start-round").disabled = running;
  if (running) setTimeout(() => loadRounds().catch(failed), 3000);
}

$("start-round").addEventListener("click", async () => {
  $("start-round").disabled = true;
  try {
    await api("/learn/api/rounds", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify({ accept_proposed: $("accept-proposed").checked }) });
  } catch (error) {
    $("round-status").textContent = `Could not start: ${error.message}`;
  }
  await loadRounds();
});

loadRounds().catch((error) => ($("rounds").textContent = `Could not load the rounds: ${error.message}`));
