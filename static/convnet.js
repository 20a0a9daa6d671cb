// The cnn's diagram, laid out as CNN Explainer lays out channels: one row per
// layer, each channel a live tile of its feature map (frame.channels, after
// ReLU and max-pooling), then the 10 output classes. A tile's ring is its
// relevance for the explained class (red for, blue against); the three most
// relevant of each layer carry their rank, so a visitor sees which to tap.
// Built once per model and layout (HTML buttons over an SVG of lines),
// restyled per frame. The MLP keeps its own diagram (network.js).

import { css, diverging, prefersDarkText, sequential } from "./colormap.js";
import { paintInk, writePixels } from "./heatmap.js";

const SVG = "http://www.w3.org/2000/svg";

/** Every tile and output is a tap target at least this wide and high, CSS px (WCAG 2.2 §2.5.5 AAA). */
export const MIN_TILE_PX = 44;
const MAX_TILE_PX = 72;
const INPUT_PX = 44;
/** The caption row above the columns (14 px text). */
const CAPTION_PX = 22;
/** Between two columns: at least MIN, PREFERRED where the tiles stay ≥ MIN_TILE_PX (the width left over is
 *  shared out as gaps, where the lines run). */
const MIN_GAP_PX = 2;
const PREFERRED_GAP_PX = 8;
const PERCENT_PX = 20;
const BOTTOM_PX = 4;
/** Tiles that carry their rank: the most relevant few of each layer. */
export const RANKED = 3;
/** Lines drawn from a layer's tiles to the explained class, or to a selected channel from the layer below. */
const MIN_LINE_STRENGTH = 0.03;

/** The conv layers of a welcome's `model.units` ({name, kind, shape: [C, h, w]}). */
export function convUnits(units) {
  return units.filter((unit) => unit.kind === "conv");
}

/** The column counts that fill a grid of `n` evenly, fewest first. */
function divisors(n) {
  return Array.from({ length: n }, (_, k) => k + 1).filter((cols) => n % cols === 0);
}

/** Every combination of one entry per list. */
function product(lists) {
  return lists.reduce((combos, list) => combos.flatMap((combo) => list.map((item) => [...combo, item])), [[]]);
}

/**
 * One column per layer, left to right as in CNN Explainer (conv1 | conv2 | outputs), each a grid of
 * tiles of one size: the largest size (≤ MAX_TILE_PX) whose grids fit `widthPx` and `heightBudgetPx`,
 * with the outputs' percentages if they fit too; never below MIN_TILE_PX (then the shortest layout,
 * which may overflow the budget). The input image gets a column of its own where the width is left.
 * @param {{name: string, kind: string, shape: number[]}[]} units  welcome.model.units
 * @param {number} classes
 * @param {number} widthPx
 * @param {number} heightBudgetPx
 * @returns {object} in CSS px: width, height, tile, input {x, y, size}|null, layers [{name, channels,
 *   positions [{x, y}] (top-left corners)}], outputs {cell, percent, positions [{x, y}]}, captions
 *   [{text, x, width}]
 */
export function layoutConvnet(units, classes, widthPx, heightBudgetPx) {
  const layers = convUnits(units).map(({ name, shape }) => ({ name, channels: shape[0] }));
  const counts = [...layers.map((layer) => layer.channels), classes];
  const inner = counts.length - 1;
  const candidates = product(counts.map(divisors)).flatMap((cols) => [true, false].map((percent) => {
    const across = cols.reduce((sum, c) => sum + c, 0);
    const roomy = Math.floor((widthPx - PREFERRED_GAP_PX * inner) / across);
    const tile = Math.min(MAX_TILE_PX, roomy >= MIN_TILE_PX ? roomy : Math.floor((widthPx - MIN_GAP_PX * inner) / across));
    const heights = counts.map((n, b) => (n / cols[b]) * (tile + (percent && b === counts.length - 1 ? PERCENT_PX : 0)));
    return { cols, percent, tile, tall: Math.max(...heights), height: CAPTION_PX + Math.max(...heights) + BOTTOM_PX };
  })).filter((candidate) => candidate.tile >= MIN_TILE_PX);
  if (!candidates.length) throw new Error(`Expected a diagram at least ${MIN_TILE_PX * 4} px wide, got ${widthPx} px`);
  const fits = candidates.filter((candidate) => candidate.height <= heightBudgetPx + 0.5);
  const best = fits.length
    ? fits.sort((a, b) => b.tile - a.tile || Number(b.percent) - Number(a.percent) || a.height - b.height)[0]
    : candidates.sort((a, b) => a.height - b.height || b.tile - a.tile)[0];
  return placeColumns(layers, classes, widthPx, best);
}

function placeColumns(layers, classes, width, { cols, percent, tile, tall, height }) {
  const widths = cols.map((c) => c * tile);
  const used = widths.reduce((sum, w) => sum + w, 0);
  const input = width - used - 8 * MIN_GAP_PX * (cols.length + 2) >= INPUT_PX; // with room to spare for lines
  const blocks = cols.length + (input ? 1 : 0);
  const spare = width - used - (input ? INPUT_PX : 0);
  // Margins left and right too where there is room; a phone's columns use the whole width.
  const margins = spare / (blocks + 1) >= 3 * PREFERRED_GAP_PX;
  const gap = spare / (margins ? blocks + 1 : blocks - 1);
  let x = margins ? gap : 0;
  const captions = [];
  let inputBox = null;
  if (input) {
    inputBox = { x, y: CAPTION_PX + (tall - INPUT_PX) / 2, size: INPUT_PX };
    captions.push({ text: "input", x, width: INPUT_PX });
    x += INPUT_PX + gap;
  }
  const grid = (count, c, rowHeight) => {
    const top = CAPTION_PX + (tall - (count / c) * rowHeight) / 2; // centred on the tallest column
    const left = x;
    return Array.from({ length: count }, (_, k) => ({ x: left + (k % c) * tile, y: top + Math.floor(k / c) * rowHeight }));
  };
  const placed = layers.map(({ name, channels }, b) => {
    const positions = grid(channels, cols[b], tile);
    captions.push({ text: `${name} · ${channels}`, x, width: widths[b] });
    x += widths[b] + gap;
    return { name, channels, positions };
  });
  const outCols = cols[cols.length - 1];
  const positions = grid(classes, outCols, tile + (percent ? PERCENT_PX : 0));
  captions.push({ text: "output", x, width: widths[widths.length - 1], output: true });
  return { width, height, tile, input: inputBox, layers: placed, outputs: { cell: tile, percent, positions }, captions };
}

function html(tag, className, parent, style = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  Object.assign(node.style, style);
  if (parent) parent.append(node);
  return node;
}

function px(value) {
  return `${value}px`;
}

/**
 * Build the diagram for a layout inside `container`; returns the cached parts `updateConvnet` restyles.
 * @param {HTMLElement} container  the network box (data-part="network")
 * @param {ReturnType<typeof layoutConvnet>} layout
 */
export function buildConvnet(container, layout) {
  const root = html("div", "convnet", null, { width: px(layout.width), height: px(layout.height) });
  root.setAttribute("role", "group");
  root.setAttribute("aria-label", `Convolutional network: input, ${layout.layers.map((l) => `${l.name} with ${l.channels} channels`).join(", ")}, ${layout.outputs.positions.length} outputs`);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "convnet-lines");
  svg.setAttribute("width", layout.width);
  svg.setAttribute("height", layout.height);
  svg.setAttribute("aria-hidden", "true");
  root.append(svg);
  for (const { text, x, width } of layout.captions) {
    const caption = html("p", "convnet-caption", root, { left: px(x), width: px(width) });
    caption.textContent = text;
  }
  let input = null;
  if (layout.input) {
    const { x, y, size } = layout.input;
    input = html("canvas", "convnet-input pixelated", root, { left: px(x), top: px(y), width: px(size), height: px(size) });
    input.setAttribute("role", "img");
    input.setAttribute("aria-label", "The input image");
  }
  const layers = Object.fromEntries(layout.layers.map((layer) => [layer.name, layer.positions.map(({ x, y }, k) => {
    const button = html("button", "tile", root, { left: px(x), top: px(y), width: px(layout.tile), height: px(layout.tile) });
    button.type = "button";
    button.dataset.layer = layer.name;
    button.dataset.channel = String(k);
    button.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-label", `${layer.name} channel ${k}`);
    const canvas = html("canvas", "pixelated", button);
    const rank = html("span", "tile-rank", button);
    rank.hidden = true;
    return { button, canvas, rank };
  })]));
  const { cell, percent, positions } = layout.outputs;
  // The output layer's box (the stage's tests find it by .output-layer, as in the MLP's diagram).
  const left = Math.min(...positions.map((p) => p.x));
  const top = Math.min(...positions.map((p) => p.y));
  const bottom = Math.max(...positions.map((p) => p.y)) + cell + (percent ? PERCENT_PX : 0);
  const right = Math.max(...positions.map((p) => p.x)) + cell;
  const layer = html("div", "output-layer", root, { left: px(left), top: px(top), width: px(right - left), height: px(bottom - top) });
  const outputs = positions.map(({ x, y }, c) => {
    const button = html("button", "convnet-output", layer, { left: px(x - left), top: px(y - top), width: px(cell), height: px(cell) });
    button.type = "button";
    button.dataset.output = String(c);
    button.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-label", `Output for digit ${c}`);
    button.textContent = String(c);
    const probability = percent ? html("span", "convnet-percent", layer, { left: px(x - left), top: px(y - top + cell), width: px(cell) }) : null;
    return { button, probability };
  });
  container.replaceChildren(root);
  return { layout, root, svg, input, layers, outputs, drawn: null };
}

/**
 * Channels of one layer ranked by their relevance for the explained class, most relevant first
 * (ties by index). Only channels with positive relevance are ranked: a blank pad ranks none.
 * @param {Float32Array} relevance  one value per channel
 * @returns {number[]} channel indices
 */
export function rankChannels(relevance) {
  return [...relevance.keys()].filter((k) => relevance[k] > 0).sort((a, b) => relevance[b] - relevance[a] || a - b);
}

/** Max over a typed array, at least `floor`. */
function maxOf(values, floor) {
  let max = floor;
  for (const v of values) max = Math.max(max, v);
  return max;
}

function paintTiles(tiles, activations, relevance, empty) {
  const [channels, rows, cols] = activations.shape;
  const size = rows * cols;
  const top = maxOf(activations.values, 1e-9); // one scale per layer: a weak channel looks weak
  const maxRelevance = Math.max(...Array.from(relevance, Math.abs), 1e-12);
  const ranks = empty ? [] : rankChannels(relevance);
  for (let k = 0; k < channels; k += 1) {
    const { button, canvas, rank } = tiles[k];
    const map = activations.values.subarray(k * size, (k + 1) * size);
    writePixels(canvas, [rows, cols], (i) => sequential(map[i] / top));
    const strength = empty ? 0 : relevance[k] / maxRelevance;
    button.style.borderColor = css(diverging(strength));
    const place = ranks.indexOf(k);
    rank.hidden = place < 0 || place >= RANKED;
    rank.textContent = rank.hidden ? "" : String(place + 1);
    button.classList.toggle("top", place === 0);
    const words = empty ? "" : `, relevance rank ${place < 0 ? "none" : `${place + 1} of ${channels}`}`;
    button.setAttribute("aria-label", `${button.dataset.layer} channel ${k}${words}`);
  }
}

function line(svg, from, to, value, strength) {
  const node = document.createElementNS(SVG, "line");
  for (const [key, v] of Object.entries({ x1: from.x, y1: from.y, x2: to.x, y2: to.y })) node.setAttribute(key, v.toFixed(1));
  node.setAttribute("stroke", css(diverging(value)));
  node.setAttribute("stroke-width", (1 + 5 * strength).toFixed(2));
  node.setAttribute("stroke-opacity", (0.35 + 0.6 * strength).toFixed(2));
  svg.append(node);
}

function rightMiddle({ x, y }, size) {
  return { x: x + size, y: y + size / 2 };
}

function leftMiddle({ x, y }, size) {
  return { x, y: y + size / 2 };
}

/** Lines: the last conv layer's channels → the explained class; the layer below → a selected channel (frame.feeds). */
function drawLines(view, frame, selection) {
  const { layout, svg } = view;
  svg.replaceChildren();
  const last = layout.layers[layout.layers.length - 1];
  const relevance = frame.channels[last.name].relevance;
  const maxRelevance = Math.max(...Array.from(relevance, Math.abs), 1e-12);
  const target = leftMiddle(layout.outputs.positions[frame.target], layout.outputs.cell);
  last.positions.forEach((position, k) => {
    const strength = Math.abs(relevance[k]) / maxRelevance;
    if (strength >= MIN_LINE_STRENGTH) line(svg, rightMiddle(position, layout.tile), target, relevance[k] / maxRelevance, strength);
  });
  const into = layout.layers.find((layer) => layer.name === selection.layer);
  const from = layout.layers.find((layer) => layer.name === frame.feeds?.layer);
  if (!frame.feeds || !into || !from || frame.layer !== selection.layer || frame.hidden !== selection.hidden) return;
  const feeds = frame.feeds.relevance;
  const maxFeed = Math.max(...Array.from(feeds, Math.abs), 1e-12);
  const end = leftMiddle(into.positions[selection.hidden], layout.tile);
  from.positions.forEach((position, k) => {
    const strength = Math.abs(feeds[k]) / maxFeed;
    if (strength >= MIN_LINE_STRENGTH) line(svg, rightMiddle(position, layout.tile), end, feeds[k] / maxFeed, strength);
  });
}

/**
 * Restyle the diagram for a frame and the selection. Touches only parts built by buildConvnet.
 * @param {ReturnType<typeof buildConvnet>} view
 * @param {object} frame  decoded frame of this model (arrays.decodeFrame): `channels` not null
 * @param {{output: number|null, hidden: number|null, layer?: string|null}} selection
 * @param {boolean} empty  nothing drawn: no reading, so no relevance, ranks, lines or percentages
 */
export function updateConvnet(view, frame, selection, empty) {
  if (view.input) paintInk(view.input, frame.input);
  for (const { name } of view.layout.layers) {
    paintTiles(view.layers[name], frame.channels[name].activations, frame.channels[name].relevance, empty);
  }
  if (empty) view.svg.replaceChildren();
  else drawLines(view, frame, selection);
  view.outputs.forEach(({ button, probability }, c) => {
    const fill = sequential(empty ? 0 : frame.probabilities[c]);
    button.style.background = css(fill);
    button.style.color = prefersDarkText(fill) ? "#000000" : "#ffffff";
    button.classList.toggle("predicted", !empty && c === frame.prediction);
    if (probability) {
      probability.textContent = empty ? "" : `${Math.round(frame.probabilities[c] * 100)}%`;
      probability.classList.toggle("predicted", !empty && c === frame.prediction);
    }
  });
  markChannel(view, selection);
}

/** aria-pressed and the selection frame on the selected channel and class. */
export function markChannel(view, { output, hidden, layer = null }) {
  for (const [name, tiles] of Object.entries(view.layers)) {
    tiles.forEach(({ button }, k) => button.setAttribute("aria-pressed", String(name === layer && k === hidden)));
  }
  view.outputs.forEach(({ button }, c) => button.setAttribute("aria-pressed", String(c === output)));
}

/**
 * The selection after tapping channel `channel` of `layer`: that channel, explained toward the chosen
 * class (else the prediction, which the server follows); the selected channel tapped again clears it.
 * @param {{output: number|null, hidden: number|null, layer?: string|null, implicit: boolean}} selection
 */
export function channelSelection(selection, layer, channel) {
  const output = selection.implicit ? null : selection.output;
  const again = selection.layer === layer && selection.hidden === channel;
  return { output, hidden: again ? null : channel, layer: again ? null : layer, alone: false, implicit: false, versus: null };
}

/** The selection after tapping output `c`: that class, keeping the selected channel. */
export function outputSelection(selection, c) {
  return { ...selection, output: c, alone: false, implicit: false, versus: null };
}

/**
 * Taps and keys on the diagram → handlers. A tile or output is a button: Enter and Space tap it
 * too; Escape goes back to the prediction.
 * @param {HTMLElement} container
 * @param {{onChannel: (layer: string, channel: number) => void, onOutput: (c: number) => void, onReset: () => void}} handlers
 */
export function listenConvnet(container, { onChannel, onOutput, onReset }) {
  container.addEventListener("click", (event) => {
    const tile = event.target.closest?.(".convnet .tile");
    if (tile) onChannel(tile.dataset.layer, Number(tile.dataset.channel));
    const output = event.target.closest?.(".convnet .convnet-output");
    if (output) onOutput(Number(output.dataset.output));
  });
  container.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && event.target.closest?.(".convnet")) onReset();
  });
}

/**
 * Build (when model or layout changed) and restyle the stage's cnn diagram.
 * @param {{box: HTMLElement, view: object|null, key: string}} diagram  main.js's stage diagram
 * @param {object} state  the page state
 * @param {number} widthPx
 * @param {number} budgetPx  the height the window leaves below the diagram's top
 * @param {boolean} empty  nothing drawn
 */
export function renderConvnet(diagram, state, widthPx, budgetPx, empty) {
  const model = state.welcome.model;
  const classes = model.layers[model.layers.length - 1];
  const layout = layoutConvnet(model.units, classes, widthPx, budgetPx);
  const key = `cnn/${model.name}/${layout.width}/${layout.height}/${layout.tile}/${Boolean(layout.input)}/${layout.outputs.percent}`;
  if (key !== diagram.key) {
    diagram.view = buildConvnet(diagram.box, layout);
    diagram.key = key;
  }
  const view = diagram.view;
  const frame = state.frame;
  const fresh = frame && frame.model === model.name && frame.channels;
  const drawn = { frame, selection: state.selection, empty };
  if (view.drawn && Object.keys(drawn).every((k) => view.drawn[k] === drawn[k])) return;
  view.drawn = drawn;
  if (fresh) updateConvnet(view, frame, state.selection, empty);
  else markChannel(view, state.selection);
}

/**
 * Show the parts of the page that belong to the model's family and hide the others: the MLP's
 * "All neurons" sheet, weight templates, key and neuron card; the cnn's key and channel card.
 * @param {boolean} cnn
 */
export function showFamily(cnn) {
  for (const element of document.querySelectorAll("[data-family]")) element.hidden = (element.dataset.family === "cnn") !== cnn;
  if (cnn) document.getElementById("network-all").hidden = true;
}
