// "Can I trust this map?" (issue 11): where the relevance went (conservation, in words) and the
// live sanity checks of the map on screen (docs/protocol.md, "sanity"), asked for when the visitor
// pauses: the map from two randomised copies of the model side by side with their rank correlation,
// the deletion curve against a random order, and a one-line verdict.

import { decode } from "./arrays.js";
import { formatNumber, paintRelevance } from "./heatmap.js";
import { addPanel } from "./panels.js";
import { isEmpty } from "./state.js";

const SVG = "http://www.w3.org/2000/svg";
const PLOT = { width: 240, height: 110, pad: 6 };

function make(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function percentOf(part, whole) {
  return whole === 0 ? "" : ` (${Math.round((100 * Math.abs(part)) / Math.abs(whole))}\u00a0%)`;
}

/**
 * Where the relevance went, in words a visitor understands. Pure.
 * @param {object} frame  a frame (docs/protocol.md): mode, target, hidden, conservation
 * @param {string} rule  the rule preset's name
 * @returns {string[]} sentences
 */
export function conservationWords(frame, rule) {
  const { input_sum: input, hidden_sum: hidden, logit } = frame.conservation;
  const n = formatNumber;
  if (frame.mode === "attribution") {
    return [`The map adds up to ${n(input)}; the score of '${frame.target}' is ${n(frame.logits[frame.target])}.`,
      "This method does not pass relevance through the hidden layer, so there is nothing to follow there."];
  }
  const lower = hiddenToPixels(input, hidden, rule);
  if (frame.mode === "hidden") {
    return [`Neuron ${frame.hidden}'s input is ${n(hidden)}; the pixels hold ${n(input)} of it. ${lower}`];
  }
  const score = frame.mode === "contrast" ? `the score difference of '${frame.target}' over '${frame.versus}'`
    : `the score (logit) of '${frame.target}'`;
  const start = `The explanation starts from ${score}: ${n(logit)}.`;
  if (frame.mode === "crp") {
    return [start, `Neuron ${frame.hidden} passes on ${n(hidden)} of it; its pixels hold ${n(input)}. ${lower}`];
  }
  const kept = logit - hidden;
  return [start, `${n(hidden)} reaches the hidden layer: the output neuron's bias kept ${n(kept)}${percentOf(kept, logit)}.`,
    `The pixels hold ${n(input)}. ${lower}`];
}

/** What the rule did between the hidden layer and the pixels. */
function hiddenToPixels(input, hidden, rule) {
  const difference = input - hidden;
  if (Math.abs(difference) <= 0.01 * Math.max(Math.abs(hidden), 1e-9)) return "The rule passed it on whole.";
  if (Math.abs(input) > Math.abs(hidden)) {
    return rule === "alpha2beta1"
      ? `α2β1 created ${formatNumber(difference)}: it counts positive contributions twice and negative ones once.`
      : `The rule created ${formatNumber(difference)}.`;
  }
  return `The hidden neurons' biases kept ${formatNumber(hidden - input)}${percentOf(hidden - input, hidden)}.`;
}

/** The deletion plot: the map's order (solid) and the random order (dashed), as SVG polylines. */
function drawCurves(svg, deletion) {
  const values = [...deletion.curve, ...deletion.random];
  const [low, high] = [Math.min(...values), Math.max(...values)];
  const span = high - low || 1;
  const points = (curve) => curve.map((v, k) => {
    const x = PLOT.pad + (k / (curve.length - 1)) * (PLOT.width - 2 * PLOT.pad);
    const y = PLOT.pad + ((high - v) / span) * (PLOT.height - 2 * PLOT.pad);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  }).join(" ");
  svg.replaceChildren();
  for (const [curve, className] of [[deletion.random, "curve-random"], [deletion.curve, "curve-map"]]) {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", points(curve));
    line.setAttribute("class", className);
    svg.append(line);
  }
}

/** A key of what the map on screen depends on: a report for another key is stale. */
function mapKey(state) {
  const { selection, config, drawing } = state;
  return JSON.stringify([drawing.version, selection.output, selection.hidden, selection.alone, selection.versus,
    config?.model, config?.method, config?.rule, config?.knockout ?? []]);
}

/**
 * The panel; `render(state)` asks for checks once the visitor has paused for `limits.pause_ms`.
 * @param {{send: (message: object) => number|null}} handlers
 */
export function createTrust({ send }) {
  const { body } = addPanel({ id: "trust", title: "Can I trust this map?", order: 20 });
  body.dataset.part = "trust";
  const flow = make("div", { class: "trust-flow", "data-part": "conservation" });
  const status = make("p", { class: "trust-status" });
  const maps = make("div", { class: "trust-maps" });
  const canvases = ["This model", "Top layer random", "Both layers random"].map((title) => {
    const figure = make("figure", { class: "trust-map" });
    const canvas = make("canvas", { class: "pixelated", role: "img", "aria-label": title });
    const caption = make("figcaption", {}, title);
    figure.append(canvas, caption);
    maps.append(figure);
    return { canvas, caption, title };
  });
  const plot = make("figure", { class: "trust-plot" });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${PLOT.width} ${PLOT.height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Score as the most relevant pixels are removed (solid) and random pixels (dashed)");
  const plotCaption = make("figcaption", { "data-part": "deletion" });
  plot.append(svg, plotCaption);
  const verdict = make("p", { class: "trust-verdict", "data-part": "sanity-verdict" });
  body.append(flow, status, maps, plot, verdict);

  let report = null; // the last sanity message, with the key of the map it checked
  let wanted = null; // the key of the map a request is due or sent for
  let requests = []; // [{seq, key}] sent, oldest first
  let timer = null;

  function ask(key) {
    timer = null;
    const seq = send({ type: "sanity" });
    if (seq !== null) requests = [...requests.slice(-7), { seq, key }];
  }

  function receive(message) {
    // The server answers for its state at the latest seq it had (docs/protocol.md): the request at or before it.
    const request = requests.filter((r) => message.seq !== null && r.seq <= message.seq).pop();
    if (!request) return;
    report = { ...message, key: request.key };
    renderReport(message);
  }

  function renderReport(message) {
    const rows = [{ heatmap: message.heatmap }, ...message.randomized];
    rows.forEach((row, k) => {
      paintRelevance(canvases[k].canvas, decode(row.heatmap));
      const uncounted = row.counts === false ? " (changes only its strength: not counted)" : "";
      canvases[k].caption.textContent = k === 0 ? canvases[k].title
        : `${canvases[k].title}: ρ\u00a0=\u00a0${row.rank_correlation.toFixed(2)}${uncounted}`;
    });
    drawCurves(svg, message.deletion);
    plotCaption.textContent = `Removing the map's top pixels first (solid) drops the score by ${formatNumber(message.deletion.aopc)} on average; random pixels (dashed): ${formatNumber(message.deletion.random_aopc)}.`;
    verdict.textContent = message.verdict;
    verdict.dataset.verdict = message.empty ? "empty"
      : message.passes.randomization && message.passes.deletion ? "passes" : "careful";
  }

  function render(state) {
    const frame = state.frame;
    const drawn = frame && !isEmpty(state.drawing);
    flow.replaceChildren(...(drawn && frame.heatmap ? conservationWords(frame, state.config?.rule ?? "")
      .map((text) => make("p", {}, text)) : []));
    const key = mapKey(state);
    if (state.connection.status !== "open") wanted = null; // ask again once the connection is back
    if (drawn && key !== wanted && state.connection.status === "open") {
      clearTimeout(timer);
      wanted = key;
      timer = setTimeout(() => ask(key), state.welcome.limits.pause_ms); // a frame came: so did a welcome
    }
    const stale = report !== null && report.key !== key;
    body.classList.toggle("stale", stale || !drawn);
    status.textContent = !drawn ? "Draw a digit: the checks run when you pause."
      : report === null || stale ? "Checking this map…" : "";
    maps.hidden = plot.hidden = verdict.hidden = report === null || !drawn;
  }

  return { render, receive };
}
