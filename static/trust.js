// "Can I trust this map?" (issue 11): where the relevance went (conservation, in words) and the
// live sanity checks of the map on screen (docs/protocol.md, "sanity"), asked for when the visitor
// pauses: the map from randomised copies of the model side by side with their rank correlation and the
// band of ρ between random networks, the deletion curve against random ink orders and the least relevant
// ink first, and a one-line verdict.

import { decode } from "./arrays.js";
import { formatNumber, paintRelevance } from "./heatmap.js";
import { addPanel } from "./panels.js";
import { isEmpty } from "./state.js";

const SVG = "http://www.w3.org/2000/svg";

function make(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function percentOf(part, whole) {
  return whole === 0 || Math.sign(part) !== Math.sign(whole) ? ""
    : ` (${Math.round((100 * Math.abs(part)) / Math.abs(whole))}\u00a0%)`;
}

/** The share of its start below which a difference is rounding: the map then holds it whole. */
export const WHOLE = 1e-3;

/**
 * Where the relevance went, as numbers computed from the frame's own figures. Pure.
 * Every LRP preset has ε on the output layer, so `logit − hidden` is the output neuron's bias (for a
 * contrast, the difference of the two biases); `hidden − input` is what the hidden neurons' biases took
 * (negative: what negative biases gave the pixels): with a bias-free model every preset hands the relevance
 * down whole (docs/explanations.md, "Conservation").
 * @param {object} frame  a frame (docs/protocol.md): mode, conservation
 * @returns {{logit: number, hidden: number, input: number, outputBias: number|null, hiddenBiases: number}}
 */
export function relevanceFlow(frame) {
  const { input_sum: input, hidden_sum: hidden, logit } = frame.conservation;
  const lrp = frame.mode === "lrp" || frame.mode === "contrast";
  return { logit, hidden, input, outputBias: lrp ? logit - hidden : null, hiddenBiases: hidden - input };
}

/**
 * Where the relevance went, in words a visitor understands. Pure.
 * @param {object} frame  a frame (docs/protocol.md): mode, target, hidden, conservation
 * @param {string} rule  the rule preset's name
 * @returns {string[]} sentences
 */
export function conservationWords(frame, rule) {
  const n = formatNumber;
  if (frame.mode === "attribution") {
    return [`The map adds up to ${n(frame.conservation.input_sum)}; the score of '${frame.target}' is ${n(frame.logits[frame.target])}.`,
      "This method does not pass relevance through the hidden layer, so there is nothing to follow there."];
  }
  const flow = relevanceFlow(frame);
  const one = frame.mode === "crp" || frame.mode === "hidden";
  const lower = hiddenToPixels(flow, rule, one ? `neuron ${frame.hidden}'s bias` : "the hidden neurons' biases", one);
  if (frame.mode === "hidden") {
    return [`Neuron ${frame.hidden}'s input is ${n(flow.hidden)}. ${lower}`];
  }
  const score = frame.mode === "contrast" ? `the score difference of '${frame.target}' over '${frame.versus}'`
    : `the score (logit) of '${frame.target}'`;
  const start = `The explanation starts from ${score}: ${n(flow.logit)}.`;
  const ruleOnly = "The rule changes only this last step: the hidden neurons' relevance is the same under every rule (ε on the output layer).";
  if (frame.mode === "crp") {
    return [start, `Neuron ${frame.hidden} passes on ${n(flow.hidden)} of it. ${lower}`, ruleOnly];
  }
  const bias = frame.mode === "contrast" ? "the two output neurons' biases hold" : "the output neuron's bias holds";
  return [start, `${n(flow.hidden)} reaches the hidden layer; ${bias} the rest, ${n(flow.outputBias)}${percentOf(flow.outputBias, flow.logit)}.`,
    lower, ruleOnly];
}

/** What happened between the hidden layer and the pixels, from the figures: the biases' share, or nothing. */
function hiddenToPixels(flow, rule, biases, single) {
  const { hidden, input, hiddenBiases } = flow;
  const holds = `The pixels hold ${formatNumber(input)}`;
  if (Math.abs(hiddenBiases) <= WHOLE * Math.max(Math.abs(hidden), 1e-9)) {
    return rule === "zbox" ? `${holds}: ZBox passes it on whole.` : `${holds}: all of it.`;
  }
  const amount = formatNumber(Math.abs(hiddenBiases));
  return hiddenBiases > 0
    ? `${holds}: ${biases} took ${amount}${percentOf(hiddenBiases, hidden)}.`
    : `${holds}, ${amount} more: ${biases} gave the pixels that much (${single ? "a negative bias" : "a negative share, net"}).`;
}

/** The deletion plot's area, in its viewBox units. Its axes' numbers and names are HTML beside it, in a grid
 *  around the SVG (never over it): a contrast checker reads their background, and they stay 14 px. */
const PLOT = { width: 260, height: 130, pad: 6 };

function svgNode(name, attributes, parent, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  parent.append(node);
  return node;
}

/**
 * The deletion plot: the random ink orders' range (band) and median (dashed), least relevant first (dotted),
 * the map (solid), and the insertion curve (the map's top pixels put back on a blank pad first, amber), with
 * axes: the score (y, its lowest and highest value and 0 when in range) against the pixels removed or put
 * back (x, 0 … steps × pixels_per_step).
 * @param {SVGSVGElement} svg
 * @param {{yTicks: HTMLElement, xTicks: HTMLElement}} ticks  the boxes left of and below the SVG
 * @param {object} deletion  a sanity message's `deletion`
 */
function drawCurves(svg, { yTicks, xTicks }, deletion) {
  const values = [...deletion.curve, ...deletion.least, ...deletion.random.flat(), ...deletion.insertion];
  const [low, high] = [Math.min(...values), Math.max(...values)];
  const span = high - low || 1;
  const [x0, x1, y0, y1] = [PLOT.pad, PLOT.width - PLOT.pad, PLOT.height - PLOT.pad, PLOT.pad];
  const x = (k, length) => x0 + (k / (length - 1)) * (x1 - x0);
  const y = (v) => y1 + ((high - v) / span) * (y0 - y1);
  const points = (curve) => curve.map((v, k) => `${x(k, curve.length).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const at = (k, pick) => pick(deletion.random.map((curve) => curve[k]));
  const steps = deletion.curve.length;
  const lower = Array.from({ length: steps }, (_, k) => at(k, (v) => Math.min(...v)));
  const upper = Array.from({ length: steps }, (_, k) => at(k, (v) => Math.max(...v)));
  const median = Array.from({ length: steps }, (_, k) => at(k, (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]));
  svg.replaceChildren();
  yTicks.replaceChildren();
  xTicks.replaceChildren();
  const axes = svgNode("g", { class: "axes" }, svg);
  svgNode("line", { x1: x0, y1: y0, x2: x1, y2: y0 }, axes);
  svgNode("line", { x1: x0, y1: y1, x2: x0, y2: y0 }, axes);
  const ticks = [high, low, ...(low < 0 && high > 0 ? [0] : [])];
  for (const value of ticks) {
    svgNode("line", { x1: x0 - 4, y1: y(value), x2: x0, y2: y(value) }, axes);
    if (value === 0) svgNode("line", { class: "zero", x1: x0, y1: y(0), x2: x1, y2: y(0) }, axes);
    const label = make("span", {}, value === 0 ? "0" : formatNumber(value));
    label.style.top = `${(100 * y(value)) / PLOT.height}%`;
    yTicks.append(label);
  }
  const removed = (steps - 1) * deletion.pixels_per_step;
  for (const pixels of [0, removed / 2, removed]) {
    const where = x0 + (pixels / (removed || 1)) * (x1 - x0);
    svgNode("line", { x1: where, y1: y0, x2: where, y2: y0 + 4 }, axes);
    const label = make("span", {}, String(pixels));
    label.style.left = `${(100 * where) / PLOT.width}%`;
    label.style.transform = `translateX(${pixels === removed ? "-100%" : pixels ? "-50%" : "0"})`;
    xTicks.append(label);
  }
  const band = svgNode("polygon", { class: "band-random" }, svg);
  band.setAttribute("points", [...upper.map((v, k) => `${x(k, steps).toFixed(1)},${y(v).toFixed(1)}`),
    ...lower.map((v, k) => `${x(k, steps).toFixed(1)},${y(v).toFixed(1)}`).reverse()].join(" "));
  for (const [curve, className] of [[median, "curve-random"], [deletion.least, "curve-least"],
    [deletion.insertion, "curve-insertion"], [deletion.curve, "curve-map"]]) {
    svgNode("polyline", { points: points(curve), class: className }, svg);
  }
}

/** A caption's ρ against its random-pair band, or why there is none. */
function rhoWords(row) {
  if (row.rank_correlation === null || row.band === null) return "ρ not applicable (the random networks' maps are empty here)";
  const band = `random pairs ${row.band.low.toFixed(2)}–${row.band.high.toFixed(2)}`;
  return `ρ\u00a0=\u00a0${row.rank_correlation.toFixed(2)} (${band})`;
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
  // The plot in a grid: the y axis's name above, its numbers left, the x axis's numbers and name below.
  // Hidden from assistive technology: the SVG's label says what the plot shows.
  const plotBox = make("div", { class: "plot-box" });
  const yName = make("span", { class: "y-name", "aria-hidden": "true" }, "score");
  const yTicks = make("div", { class: "y-ticks", "aria-hidden": "true" });
  const xTicks = make("div", { class: "x-ticks", "aria-hidden": "true" });
  const xName = make("span", { class: "x-name", "aria-hidden": "true" }, "pixels removed or put back");
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${PLOT.width} ${PLOT.height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Score as the most relevant pixels are removed (solid), random ink (dashed, with its range) and the least relevant ink (dotted), and as the most relevant pixels are put back on a blank pad (amber)");
  const plotCaption = make("figcaption", { "data-part": "deletion" });
  plotBox.append(yName, yTicks, svg, xTicks, xName);
  plot.append(plotBox, plotCaption);
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
      // A cnn's second step re-initialises every layer (docs/protocol.md, sanity): its own title.
      const title = row.layers === "all" ? "Every layer random" : canvases[k].title;
      canvases[k].canvas.setAttribute("aria-label", title);
      canvases[k].caption.textContent = k === 0 ? title : `${title}: ${rhoWords(row)}${uncounted}`;
    });
    drawCurves(svg, { yTicks, xTicks }, message.deletion);
    const { aopc, least_aopc: least, random_aopc: random } = message.deletion;
    plotCaption.textContent = `Removing the map's top pixels first (solid) drops the score by ${formatNumber(aopc)} on average; `
      + `random ink (dashed, grey band: ${message.deletion.random.length} orders) by ${formatNumber(random.low)}–${formatNumber(random.high)}; `
      + `its least relevant ink first (dotted) by ${formatNumber(least)}. Putting the top pixels back first on a blank pad `
      + `(amber) raises the score by ${formatNumber(message.deletion.insertion_aopc)} on average.`;
    verdict.textContent = message.verdict;
    verdict.dataset.verdict = message.empty ? "empty"
      : message.passes.randomization === true && message.passes.deletion ? "passes" : "careful";
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
