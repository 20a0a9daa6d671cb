// The network diagram: an SVG built once per model and width, restyled per
// frame. Input (summarised as the image the model sees) → every hidden neuron
// in a grid → an output per class; lines from the hidden neurons to the
// explained class carry the relevance flowing along them.

import { css, diverging, prefersDarkText, sequential } from "./colormap.js";
import { paintInk } from "./heatmap.js";

const SVG = "http://www.w3.org/2000/svg";
const HTML = "http://www.w3.org/1999/xhtml";

/** Every neuron is a tap target at least this wide and high, CSS px (WCAG 2.2 §2.5.5 AAA). */
export const MIN_CELL_PX = 44;
const MAX_CELL_PX = 76;
const MAX_OUTPUT_CELL_PX = 52;
const INPUT_PX = 44;
const FAN_PX = 24;
const EDGE_BAND_PX = 38;
/** Width kept for the input caption left of the input image on narrow diagrams. */
const INPUT_CAPTION_PX = 190;
const PROBABILITY_TEXT_PX = 20;
/** Below the percentages. */
const BOTTOM_PX = 4;
/** Lines drawn to the explained class: every one for small layers, else the strongest. */
const MAX_LINES = 24;
/** Hidden neurons that carry their rank (1 2 3): the ones worth tapping first, as a cnn's channels. */
export const RANKED = 3;
const RANK_RADIUS_PX = 9;

/** Strip mode: at most this many hidden neurons, each a cell at least this wide. */
const STRIP_MAX_SLOTS = 8;
const STRIP_CELL_PX = 50;
/** Strip mode: the caption row above the strip, as tall as the "All neurons" button beside it. */
const STRIP_HEAD_PX = 44;
/** Strip mode: outputs as small as a tap target allows (the strip exists to fit a short screen). */
const STRIP_OUTPUT_CELL_PX = 46;

/**
 * Positions of every element for `hidden` neurons in `widthPx`, choosing the
 * hidden grid's columns so cells are as large as fit `heightBudgetPx`, never
 * below MIN_CELL_PX. When even MIN_CELL_PX cells overflow the budget (a phone,
 * a portrait tablet), the layout is a *strip*: the few most relevant hidden
 * neurons in one row above the outputs (which neurons fill its slots is
 * decided per frame by `updateNetwork`), the full grid being one tap away.
 * @param {{inputs: number, hidden: number, classes: number}} sizes  the model's (state.js modelSizes)
 * @param {number} widthPx
 * @param {number} heightBudgetPx
 * @param {{full?: boolean}} options  full: the whole grid whatever the budget (it grows taller)
 * @returns {object} layout in CSS px: width, height, strip, slots, cell, cols, rows, hiddenPositions[{x,y}]
 *   (one per slot), outputs[{x,y}], ...
 */
export function layoutNetwork({ inputs, hidden, classes }, widthPx, heightBudgetPx, { full = false } = {}) {
  const width = Math.max(MIN_CELL_PX * Math.ceil(classes / 2), widthPx); // the outputs fit in two rows
  const outputs = outputRows(width, classes);
  const grid = gridLayout(hidden, width, heightBudgetPx, outputs);
  const layout = full || grid.height <= heightBudgetPx + 0.5 ? grid : stripLayout(hidden, width, outputs);
  return { ...layout, inputs, classes };
}

/** The outputs in one row, or in two when a row of tap targets does not fit the width. */
function outputRows(width, classes) {
  const outCols = width / classes >= MIN_CELL_PX ? classes : Math.ceil(classes / 2);
  return { classes, outCols, outRows: Math.ceil(classes / outCols), outCellBase: Math.min(MAX_OUTPUT_CELL_PX, width / outCols) };
}

function outputPositions(width, outTop, { classes, outCols }, outCell) {
  const outLeft = (width - outCols * outCell) / 2;
  return Array.from({ length: classes }, (_, c) => ({
    x: outLeft + ((c % outCols) + 0.5) * outCell,
    y: outTop + Math.floor(c / outCols) * (outCell + PROBABILITY_TEXT_PX) + outCell / 2,
  }));
}

function gridLayout(hidden, width, heightBudgetPx, outputs) {
  const { outCols, outRows, outCellBase } = outputs;
  const gridTop = 4 + INPUT_PX + FAN_PX;
  const outputsBudget = outRows * (outCellBase + PROBABILITY_TEXT_PX);
  const gridBudget = heightBudgetPx - gridTop - EDGE_BAND_PX - outputsBudget - BOTTOM_PX;

  let best = null;
  for (let cols = 1; cols <= hidden; cols += 1) {
    const rows = Math.ceil(hidden / cols);
    const cell = Math.min(MAX_CELL_PX, width / cols, gridBudget / rows);
    const better = !best || cell > best.cell + 1e-6 || (cell > best.cell - 1e-6 && cols * rows < best.cols * best.rows);
    if (better) best = { cols, rows, cell };
  }
  if (best.cell < MIN_CELL_PX) {
    const cols = Math.max(1, Math.min(hidden, Math.floor(width / MIN_CELL_PX)));
    best = { cols, rows: Math.ceil(hidden / cols), cell: Math.min(MAX_CELL_PX, width / cols) };
  }
  const { cols, rows, cell } = best;
  // Outputs as large as the hidden cells when the width and the budget allow (a kiosk), never
  // smaller than planned above.
  const slack = (gridBudget - rows * cell) / outRows;
  const outCell = Math.max(outCellBase, Math.min(cell, width / outCols, outCellBase + slack));
  const outputsHeight = outRows * (outCell + PROBABILITY_TEXT_PX);
  const gridLeft = (width - cols * cell) / 2;
  const hiddenPositions = Array.from({ length: hidden }, (_, j) => ({
    x: gridLeft + ((j % cols) + 0.5) * cell,
    y: gridTop + (Math.floor(j / cols) + 0.5) * cell,
  }));
  const outTop = gridTop + rows * cell + EDGE_BAND_PX;
  return {
    width, height: outTop + outputsHeight + BOTTOM_PX, hidden, strip: false, slots: hidden, cols, rows, cell, outCell,
    gridTop, gridLeft, outTop,
    input: { x: Math.max((width - INPUT_PX) / 2, INPUT_CAPTION_PX), y: 4, size: INPUT_PX },
    hiddenPositions, outputPositions: outputPositions(width, outTop, outputs, outCell),
  };
}

function stripLayout(hidden, width, outputs) {
  const { outRows, outCellBase } = outputs;
  const slots = Math.min(hidden, STRIP_MAX_SLOTS, Math.max(1, Math.floor(width / STRIP_CELL_PX)));
  const cell = Math.min(MAX_CELL_PX, width / slots);
  const gridTop = STRIP_HEAD_PX;
  const gridLeft = (width - slots * cell) / 2;
  const hiddenPositions = Array.from({ length: slots }, (_, k) => ({ x: gridLeft + (k + 0.5) * cell, y: gridTop + cell / 2 }));
  const outCell = Math.min(outCellBase, STRIP_OUTPUT_CELL_PX);
  const outTop = gridTop + cell + EDGE_BAND_PX;
  return {
    width, height: outTop + outRows * (outCell + PROBABILITY_TEXT_PX) + BOTTOM_PX, hidden, strip: true, slots,
    cols: slots, rows: 1, cell, outCell, gridTop, gridLeft, outTop, input: null,
    hiddenPositions, outputPositions: outputPositions(width, outTop, outputs, outCell),
  };
}

function element(name, attributes = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (parent) parent.append(node);
  return node;
}

/** A caption on a plate (sized by `fitPlate` once the SVG is in the page), so lines never cross its words. */
function caption(parent, x, y, text) {
  const plate = element("rect", { class: "caption-plate", rx: 4, width: 0, height: 0 }, parent);
  const node = element("text", { x, y, class: "caption" }, parent);
  node.textContent = text;
  node.plate = plate;
  return node;
}

/** Size a caption's plate to its text as laid out now (getBBox needs the SVG in the page). */
function fitPlate(node) {
  const box = node.getBBox();
  const pad = 3;
  for (const [key, value] of Object.entries({ x: box.x - pad, y: box.y - 1, width: box.width + 2 * pad, height: box.height + 2 })) {
    node.plate.setAttribute(key, value.toFixed(1));
  }
}

/** One neuron: a transparent square hit target (≥ 44 px) with a circle and its label. */
function neuron(parent, { x, y }, cell, radius, kind, index, label) {
  const group = element("g", {
    class: `neuron ${kind}`, tabindex: -1, role: "button", "aria-pressed": "false",
    "data-kind": kind, "data-index": index,
    "aria-label": kind === "hidden" ? `Hidden neuron ${index}` : `Output neuron for digit ${index}`,
  }, parent);
  element("rect", { class: "hit", x: x - cell / 2, y: y - cell / 2, width: cell, height: cell, rx: 6 }, group);
  const circle = element("circle", { class: "body", cx: x, cy: y, r: radius, fill: "#ffffff", stroke: "#cbd5e1" }, group);
  // A hidden neuron's weight template W1[j] inside its circle, when the diagram shows them (showTemplates).
  const template = kind === "hidden"
    ? element("image", { class: "template", x: x - radius, y: y - radius, width: 2 * radius, height: 2 * radius,
                         "clip-path": `circle(${radius}px)`, preserveAspectRatio: "none", visibility: "hidden" }, group)
    : null;
  const text = element("text", { class: "label", x, y, dy: "0.35em" }, group);
  text.textContent = label;
  return { group, circle, template, text };
}

function frameRect(parent, className, size) {
  return element("rect", { class: className, width: size, height: size, rx: 8, visibility: "hidden" }, parent);
}

function place(rect, { x, y }, size) {
  rect.setAttribute("x", x - size / 2);
  rect.setAttribute("y", y - size / 2);
  rect.setAttribute("visibility", "visible");
}

/**
 * Build the SVG for a layout. Returns the cached elements `updateNetwork` restyles.
 * @param {HTMLElement} container
 * @param {object} layout  from layoutNetwork
 */
export function buildNetwork(container, layout) {
  const svg = element("svg", {
    width: layout.width, height: layout.height, viewBox: `0 0 ${layout.width} ${layout.height}`,
    class: "network-svg", role: "group", "aria-label": `Network: ${layout.inputs} inputs, ${layout.hidden} hidden neurons, ${layout.classes} outputs`,
  });
  const { cell, outCell, input, gridTop, gridLeft, cols, outTop } = layout;

  let inputCanvas = null;
  if (input) {
    // Every pixel feeds every hidden neuron: one shaded fan stands for inputs × H weights.
    const gridRight = gridLeft + cols * cell;
    element("polygon", {
      class: "fan",
      points: `${input.x},${input.y + input.size} ${input.x + input.size},${input.y + input.size} ${gridRight},${gridTop} ${gridLeft},${gridTop}`,
    }, svg);
    const inputObject = element("foreignObject", { x: input.x, y: input.y, width: input.size, height: input.size }, svg);
    inputCanvas = document.createElementNS(HTML, "canvas");
    inputCanvas.className = "network-input";
    inputObject.append(inputCanvas);
  }

  const lineLayer = element("g", { class: "edges" }, svg);
  const lines = layout.hiddenPositions.map(({ x, y }) => element("line", { x1: x, y1: y, x2: x, y2: y, visibility: "hidden" }, lineLayer));

  // Frames lie under the neurons, so a neuron's keyboard focus ring (its hit square) is drawn over them.
  const markers = element("g", { class: "markers" }, svg);
  const predictedFrame = frameRect(markers, "predicted-frame", outCell - 6);
  const selectedHidden = frameRect(markers, "selected-frame", cell - 2);
  const selectedOutput = frameRect(markers, "selected-frame", outCell - 1);
  // "Why c and not c′": the c′ output's dashed frame.
  const versusFrame = frameRect(markers, "versus-frame", outCell - 6);

  const hiddenLayer = element("g", { class: "hidden-layer" }, svg);
  const radius = cell * 0.4;
  const hidden = layout.hiddenPositions.map((position, k) => neuron(hiddenLayer, position, cell, radius, "hidden", k, String(k)));
  const outputLayer = element("g", { class: "output-layer" }, svg);
  const outputs = layout.outputPositions.map((position, c) => neuron(outputLayer, position, outCell, outCell * 0.36, "output", c, String(c)));
  // Rank badges 1 2 3 on the most relevant hidden neurons, drawn over them; decorative (the neurons'
  // names say their rank), so they take no pointer and are hidden from assistive technology.
  const rankLayer = element("g", { class: "ranks", "aria-hidden": "true" }, svg);
  const ranks = layout.hiddenPositions.map(({ x, y }) => {
    const at = { x: x + cell / 2 - RANK_RADIUS_PX, y: y - cell / 2 + RANK_RADIUS_PX };
    const badge = element("g", { class: "rank", visibility: "hidden" }, rankLayer);
    element("circle", { cx: at.x, cy: at.y, r: RANK_RADIUS_PX }, badge);
    element("text", { x: at.x, y: at.y, dy: "0.35em" }, badge);
    return badge;
  });
  const probabilities = layout.outputPositions.map(({ x, y }) => {
    const text = element("text", { class: "probability", x, y: y + outCell / 2 + 15 }, outputLayer);
    text.textContent = "";
    return text;
  });

  const captions = [
    input ? caption(svg, 4, input.y + input.size / 2 + 5, `Input layer: ${layout.inputs} pixels`) : null,
    caption(svg, 4, gridTop - (layout.strip ? 16 : 8), layout.strip
      ? `Top ${layout.slots} hidden · tap one`
      : `Hidden layer: ${layout.hidden} neurons · tap one`),
  ].filter(Boolean);
  const outputCaption = caption(svg, 4, outTop - 10, emptyCaption(layout));

  container.replaceChildren(svg);
  for (const node of [...captions, outputCaption]) fitPlate(node);
  // Roving tabindex (WAI-ARIA APG, "Keyboard Navigation Inside Components"):
  // Tab enters the diagram at one neuron, arrow keys move within it.
  hidden[0].group.setAttribute("tabindex", 0);
  // slots[k]: the hidden neuron shown in slot k (all of them, in order, in a grid; chosen per frame in a strip)
  const slots = hidden.map((_, k) => k);
  return { layout, svg, inputCanvas, lines, hidden, slots, templates: null, outputs, probabilities, ranks, predictedFrame,
           selectedHidden, selectedOutput, versusFrame, outputCaption, lastCaption: null, names: hidden.map(() => "") };
}

/** The output layer's caption while it explains no class. */
function emptyCaption({ classes }) {
  return `Output layer: digits 0–${classes - 1} · tap one`;
}

/**
 * The hidden neurons a strip of `count` slots shows: the most relevant for the explained class by
 * |relevance|, ties (a blank pad) by activation; the selected neuron takes the last slot if it is
 * not among them, so a tapped neuron stays in view and selecting never reorders the strip.
 * @returns {number[]} neuron indices, one per slot
 */
export function stripSlots(count, relevance, activations, selected) {
  const ranked = [...relevance.keys()]
    .sort((a, b) => Math.abs(relevance[b]) - Math.abs(relevance[a]) || activations[b] - activations[a] || a - b)
    .slice(0, count);
  if (selected !== null && selected < relevance.length && !ranked.includes(selected)) ranked[count - 1] = selected;
  return ranked;
}

/** Point slot k's group at hidden neuron j (its data-index, label and template), in a strip. */
function assignSlot(view, k, j) {
  if (view.slots[k] === j) return;
  view.slots[k] = j;
  const { group, text } = view.hidden[k];
  group.dataset.index = String(j);
  text.textContent = String(j);
  paintTemplate(view, k);
}

/**
 * The hidden neurons worth tapping: those with the most positive relevance for the explained class
 * (ties by index), at most `count`. A blank pad (all relevance 0) ranks none.
 * @param {number[]} relevance  one value per hidden neuron
 * @returns {number[]} neuron indices, most relevant first
 */
export function rankNeurons(relevance, count = RANKED) {
  return [...relevance.keys()].filter((j) => relevance[j] > 0).sort((a, b) => relevance[b] - relevance[a] || a - b).slice(0, count);
}

/**
 * A hidden neuron's accessible name: what a sighted visitor reads off its fill, ring and badge.
 * @param {number} j
 * @param {{activation: number, relevance: number, rank: number, off: boolean, explains: string|null}} now
 *   activation: 0–1 of the layer's strongest; rank: 0-based among the ranked, −1 if not ranked;
 *   explains: what the relevance is for ("'3'", "'3' and not '8'"), null on a blank pad
 * @returns {string} e.g. "Hidden neuron 17: fires 80 %, relevance +0.12 for '3', most relevant 1"
 */
export function neuronName(j, { activation, relevance, rank, off, explains }) {
  if (off) return `Hidden neuron ${j}: switched off`;
  const fires = `fires ${Math.round(activation * 100)} %`;
  if (explains === null) return `Hidden neuron ${j}: ${fires}`;
  const sign = relevance > 0 ? "+" : relevance < 0 ? "−" : "";
  const ranked = rank >= 0 ? `, most relevant ${rank + 1}` : "";
  const value = relevance === 0 ? "0" : `${sign}${Math.abs(relevance).toPrecision(2)}`;
  return `Hidden neuron ${j}: ${fires}, relevance ${value} for ${explains}${ranked}`;
}

function paintTemplate(view, k) {
  const { template } = view.hidden[k];
  const href = view.templates?.[view.slots[k]];
  if (href) template.setAttribute("href", href);
  template.setAttribute("visibility", href ? "visible" : "hidden");
}

/**
 * Show each hidden neuron's weight template W1[j] in its circle (TensorFlow Playground shows each
 * unit's map in place), or hide them.
 * @param {ReturnType<typeof buildNetwork>} view
 * @param {string[]|null} templates  an image URL per hidden neuron; null: circles filled by activation
 */
export function showTemplates(view, templates) {
  if (view.templates === templates) return;
  view.templates = templates;
  view.svg.classList.toggle("templates", Boolean(templates));
  view.hidden.forEach((_, k) => paintTemplate(view, k));
}

/**
 * Restyle the cached elements for a frame and the selection. Touches only
 * attributes and text of elements built by buildNetwork.
 * @param {ReturnType<typeof buildNetwork>} view
 * @param {object} frame      decoded frame (arrays.decodeFrame)
 * @param {{output: number|null, hidden: number|null}} selection
 * @param {boolean} empty     nothing drawn: the net's answer to a blank pad is no reading,
 *                            so no prediction, percentages or relevance are shown
 */
export function updateNetwork(view, frame, selection, empty) {
  if (view.inputCanvas) paintInk(view.inputCanvas, frame.input);
  const maxActivation = Math.max(...frame.activations, 1e-9);
  const target = frame.target;
  const H = frame.activations.length;
  // A contrast's ring is each neuron's share of z_c − z_c′ (frame.hidden_relevance; docs/protocol.md, "Contrast").
  const relevance = Array.from({ length: H }, (_, j) => (empty ? 0
    : frame.mode === "contrast" ? frame.hidden_relevance[j] : frame.edges[j]));
  const maxRelevance = Math.max(...relevance.map(Math.abs), 1e-12);
  if (view.layout.strip) {
    stripSlots(view.hidden.length, relevance, frame.activations, selection.hidden).forEach((j, k) => assignSlot(view, k, j));
  }

  const contrast = !empty && frame.mode === "contrast" && frame.versus !== null && frame.versus !== undefined;
  const explains = empty ? null : contrast ? `'${target}' and not '${frame.versus}'` : `'${target}'`;
  const ranked = empty ? [] : rankNeurons(relevance);
  const off = new Set(frame.knockout ?? []);
  view.hidden.forEach(({ group, circle, text }, k) => {
    const j = view.slots[k];
    const fill = sequential(frame.activations[j] / maxActivation);
    circle.setAttribute("fill", css(fill));
    circle.setAttribute("stroke", css(diverging(relevance[j] / maxRelevance)));
    text.setAttribute("fill", prefersDarkText(fill) ? "#000000" : "#ffffff");
    const rank = ranked.indexOf(j);
    const badge = view.ranks[k];
    badge.setAttribute("visibility", rank >= 0 ? "visible" : "hidden");
    if (rank >= 0) badge.lastElementChild.textContent = String(rank + 1);
    const name = neuronName(j, { activation: frame.activations[j] / maxActivation, relevance: relevance[j], rank,
                                 off: off.has(j), explains });
    if (name !== view.names[k]) group.setAttribute("aria-label", name); // touch the tree only when it changes
    view.names[k] = name;
  });

  const strongest = new Set([...relevance.keys()].sort((a, b) => Math.abs(relevance[b]) - Math.abs(relevance[a])).slice(0, MAX_LINES));
  const to = view.layout.outputPositions[target];
  view.lines.forEach((line, k) => {
    const j = view.slots[k];
    const strength = Math.abs(relevance[j]) / maxRelevance;
    if (!strongest.has(j) || strength < 0.02) {
      line.setAttribute("visibility", "hidden");
      return;
    }
    line.setAttribute("visibility", "visible");
    line.setAttribute("x2", to.x);
    line.setAttribute("y2", to.y);
    line.setAttribute("stroke", css(diverging(relevance[j] / maxRelevance)));
    line.setAttribute("stroke-width", (1 + 6 * strength).toFixed(2));
    line.setAttribute("stroke-opacity", (0.35 + 0.6 * strength).toFixed(2));
  });

  view.outputs.forEach(({ group, circle, text }, c) => {
    const fill = sequential(empty ? 0 : frame.probabilities[c]);
    circle.setAttribute("fill", css(fill));
    text.setAttribute("fill", prefersDarkText(fill) ? "#000000" : "#ffffff");
    view.probabilities[c].textContent = empty ? "" : `${Math.round(frame.probabilities[c] * 100)}%`;
    view.probabilities[c].classList.toggle("predicted", !empty && c === frame.prediction);
    const role = empty ? "" : `: ${Math.round(frame.probabilities[c] * 100)} %${c === frame.prediction ? ", the prediction" : ""}`
      + (contrast && c === frame.versus ? ", the digit it is compared with" : "");
    const name = `Output neuron for digit ${c}${role}`;
    if (group.getAttribute("aria-label") !== name) group.setAttribute("aria-label", name);
  });
  if (empty) view.predictedFrame.setAttribute("visibility", "hidden");
  else place(view.predictedFrame, view.layout.outputPositions[frame.prediction], view.layout.outCell - 6);
  if (contrast) place(view.versusFrame, view.layout.outputPositions[frame.versus], view.layout.outCell - 6);
  else view.versusFrame.setAttribute("visibility", "hidden");
  // A contrast's lines carry each neuron's share of z_c − z_c′: the caption names both classes.
  const words = empty ? emptyCaption(view.layout) : contrast
    ? `Output layer · lines: why '${target}' and not '${frame.versus}'`
    : `Output layer · lines: relevance for '${target}'`;
  if (words !== view.lastCaption) {
    view.outputCaption.textContent = words;
    fitPlate(view.outputCaption);
    view.lastCaption = words;
  }
  markSelection(view, selection);
}

/** Move the selection frames and aria-pressed to the selected neurons (a strip shows them if
 *  updateNetwork put them in a slot). */
export function markSelection(view, { output, hidden }) {
  const { layout } = view;
  const slot = hidden === null ? -1 : view.slots.indexOf(hidden);
  if (slot < 0) view.selectedHidden.setAttribute("visibility", "hidden");
  else place(view.selectedHidden, layout.hiddenPositions[slot], layout.cell - 2);
  if (output === null) view.selectedOutput.setAttribute("visibility", "hidden");
  else place(view.selectedOutput, layout.outputPositions[output], layout.outCell - 1);
  view.hidden.forEach(({ group }, k) => group.setAttribute("aria-pressed", String(view.slots[k] === hidden)));
  view.outputs.forEach(({ group }, c) => group.setAttribute("aria-pressed", String(c === output)));
}

/** All neurons shown with their centres, for keyboard moves. */
function nodes(view) {
  return [
    ...view.hidden.map(({ group }, k) => ({ group, kind: "hidden", index: view.slots[k], slot: k, ...view.layout.hiddenPositions[k] })),
    ...view.outputs.map(({ group }, c) => ({ group, kind: "output", index: c, slot: c, ...view.layout.outputPositions[c] })),
  ];
}

/**
 * The neuron an arrow key moves to from `from`: Left/Right step through the
 * layer, Up/Down go to the nearest neuron above/below (across layers).
 * @returns {{kind: string, index: number}|null}
 */
export function neighbour(view, from, key) {
  const all = nodes(view);
  const here = all.find((node) => node.kind === from.kind && node.index === from.index);
  if (!here) return null;
  if (key === "ArrowLeft" || key === "ArrowRight") {
    const step = key === "ArrowLeft" ? -1 : 1;
    const next = all.find((node) => node.kind === here.kind && node.slot === here.slot + step);
    return next ? { kind: next.kind, index: next.index } : null;
  }
  const down = key === "ArrowDown";
  const margin = view.layout.cell / 2;
  let best = null;
  for (const node of all) {
    const dy = node.y - here.y;
    if (down ? dy <= margin : dy >= -margin) continue;
    const cost = Math.abs(dy) + 3 * Math.abs(node.x - here.x);
    if (!best || cost < best.cost) best = { node, cost };
  }
  return best ? { kind: best.node.kind, index: best.node.index } : null;
}

/** Focus a neuron and make it the diagram's one Tab stop. */
export function focusNeuron(view, { kind, index }) {
  const target = kind === "hidden" ? view.hidden[view.slots.indexOf(index)]?.group : view.outputs[index]?.group;
  if (!target) return;
  for (const { group } of [...view.hidden, ...view.outputs]) group.setAttribute("tabindex", -1);
  target.setAttribute("tabindex", 0);
  target.focus();
}

/** The neuron an event happened on, from the data attributes of its group. */
function pickedNeuron(event) {
  const group = event.target.closest?.(".neuron");
  return group ? { kind: group.dataset.kind, index: Number(group.dataset.index) } : null;
}

/**
 * Clicks, double-clicks and keys on the diagram → handlers.
 * Click/tap: pick a neuron. Double-click/double-tap on a hidden neuron: that
 * neuron alone. Keys on a focused neuron: arrows move the selection, Enter or
 * Space pick, "a" toggles "neuron alone", Escape goes back to the prediction.
 * @param {HTMLElement} container  holds the SVG (rebuilt per model and width)
 * @param {() => ReturnType<typeof buildNetwork>|null} currentView
 * @param {{onPick: Function, onAlone: Function, onReset: Function}} handlers
 */
export function listenNetwork(container, currentView, { onPick, onAlone, onReset }) {
  container.addEventListener("click", (event) => {
    const picked = pickedNeuron(event);
    if (!picked) return;
    focusNeuron(currentView(), picked);
    onPick(picked);
  });
  container.addEventListener("dblclick", (event) => {
    const picked = pickedNeuron(event);
    if (picked?.kind === "hidden") onAlone(picked.index, true);
  });
  container.addEventListener("keydown", (event) => {
    const picked = pickedNeuron(event);
    const view = currentView();
    if (!picked || !view) return;
    if (event.key.startsWith("Arrow")) {
      const next = neighbour(view, picked, event.key);
      event.preventDefault(); // arrows move the selection, not the page
      if (!next) return;
      focusNeuron(view, next);
      onPick(next);
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      onPick(picked);
    } else if (event.key === "a" && picked.kind === "hidden") {
      onAlone(picked.index, null);
    } else if (event.key === "Escape") {
      onReset();
    }
  });
}
