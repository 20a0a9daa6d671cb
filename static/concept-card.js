// The channel card of a cnn: what the selected channel (or fc1 unit) is, at
// rest and live. At rest, its reference samples (GET
// /api/models/{name}/concepts/{layer}/{channel}): the training-digit patches
// where it mattered most for the digit's answer (RelMax) and that make it
// fire most (ActMax), each with that digit's own map conditioned on the
// channel. Live: its CRP map in the visitor's drawing (the frame's heatmap),
// its relevance for the explained class and its rank, and, for a conv2
// channel, the conv1 channels feeding it most (frame.feeds).

import { decode } from "./arrays.js";
import { figure, make } from "./card.js";
import { rankChannels } from "./convnet.js";
import { paintInk, paintRelevance, writePixels } from "./heatmap.js";
import { css, diverging, sequential } from "./colormap.js";

/** The conv1 channels a conv2 card lists as its strongest feeds. */
const FEEDS_SHOWN = 3;

/**
 * The card's data URL for the selection: the concepts route on a cnn (fc1 when no layer is named),
 * the neuron route on an MLP (docs/protocol.md, "HTTP endpoints").
 * @param {object} welcome
 * @param {string|null} layer
 * @param {number} hidden
 */
export function cardUrl(welcome, layer, hidden) {
  const model = encodeURIComponent(welcome.model.name);
  if (welcome.model.family !== "cnn") return `/api/models/${model}/neurons/${hidden}`;
  return `/api/models/${model}/concepts/${encodeURIComponent(layer ?? "fc1")}/${hidden}`;
}

/**
 * Build the card's fixed parts inside `element`.
 * @param {HTMLElement} element  the card's section
 * @param {{onChannel: (layer: string, channel: number) => void}} handlers  a feed tapped: select it
 */
export function buildConceptCard(element, { onChannel }) {
  const hint = make("p", "concept-hint", "Tap a channel tile in the network to see what it has learned.");
  const body = make("div", "concept-body");
  const heading = make("h3", "concept-title");
  const facts = make("p", "concept-facts");
  facts.dataset.part = "channel-facts";
  const live = figure("Its map in your drawing (CRP)");
  const now = figure("Its feature map now");
  const row = make("div", "card-row");
  row.append(live.box, now.box);
  const feedsTitle = make("h4", "", "");
  const feeds = make("div", "concept-feeds");
  const relmaxTitle = make("h4", "", "Training digits where it mattered most for the answer (RelMax)");
  const relmax = make("div", "concept-samples");
  relmax.dataset.part = "relmax";
  const actmaxTitle = make("h4", "", "Training digits that make it fire most (ActMax)");
  const actmax = make("div", "concept-samples");
  actmax.dataset.part = "actmax";
  const samplesHint = make("p", "concept-hint",
    "Each sample: the patch the channel sees (top) and that digit's own map for this channel (bottom; red for, blue against its label).");
  body.append(heading, facts, row, feedsTitle, feeds, relmaxTitle, relmax, actmaxTitle, actmax, samplesHint);
  element.replaceChildren(hint, body);
  feeds.addEventListener("click", (event) => {
    const button = event.target.closest?.("button[data-channel]");
    if (button) onChannel(button.dataset.layer, Number(button.dataset.channel));
  });
  return { hint, body, heading, facts, live, now, feedsTitle, feeds, relmax, actmax, shown: null };
}

/** The selected channel's relevance for the explained class, its rank and its feature map, from the frame. */
function liveFacts(frame, layer, channel) {
  const { activations, relevance } = frame.channels[layer];
  const [, rows, cols] = activations.shape;
  const top = Math.max(...activations.values, 1e-9); // the layer's scale, as on its tiles
  const own = activations.values.subarray(channel * rows * cols, (channel + 1) * rows * cols);
  const map = { values: Float32Array.from(own, (v) => v / top), shape: [rows, cols] };
  const ranked = rankChannels(relevance);
  const place = ranked.indexOf(channel);
  return { relevance: relevance[channel], rank: place < 0 ? null : place + 1, of: relevance.length, map };
}

function signed(value) {
  return `${value >= 0 ? "+" : "−"}${Math.abs(value).toPrecision(2)}`;
}

function renderFeeds(view, frame, layer, channel) {
  const feeds = frame?.feeds && frame.layer === layer && frame.hidden === channel ? frame.feeds : null;
  view.feedsTitle.hidden = !feeds;
  view.feeds.hidden = !feeds;
  if (!feeds) return;
  view.feedsTitle.textContent = `Fed most by these ${feeds.layer} channels (their relevance flowing into it)`;
  const below = frame.channels[feeds.layer].activations;
  const [, rows, cols] = below.shape;
  const top = Math.max(...below.values, 1e-9);
  const strongest = [...feeds.relevance.keys()].sort((a, b) => feeds.relevance[b] - feeds.relevance[a]).slice(0, FEEDS_SHOWN);
  const maxFeed = Math.max(...Array.from(feeds.relevance, Math.abs), 1e-12);
  view.feeds.replaceChildren(...strongest.map((k) => {
    const button = make("button", "concept-feed");
    button.type = "button";
    button.dataset.layer = feeds.layer;
    button.dataset.channel = String(k);
    button.title = `Select ${feeds.layer} channel ${k}`;
    const canvas = make("canvas", "pixelated");
    canvas.style.borderColor = css(diverging(feeds.relevance[k] / maxFeed));
    const map = below.values.subarray(k * rows * cols, (k + 1) * rows * cols);
    writePixels(canvas, [rows, cols], (i) => sequential(map[i] / top));
    canvas.setAttribute("aria-hidden", "true");
    button.append(canvas, make("span", "", `${feeds.layer} channel ${k} · ${signed(feeds.relevance[k])}`));
    return button;
  }));
}

function samples(container, part) {
  const patches = decode(part.patch);
  const heatmaps = decode(part.heatmap);
  const [count, rows, cols] = patches.shape;
  const side = heatmaps.shape[1];
  container.replaceChildren(...Array.from({ length: count }, (_, s) => {
    const box = make("figure", "concept-sample");
    const patch = make("canvas", "pixelated");
    paintInk(patch, { values: patches.values.subarray(s * rows * cols, (s + 1) * rows * cols), shape: [rows, cols] });
    const heat = make("canvas", "pixelated");
    paintRelevance(heat, { values: heatmaps.values.subarray(s * side * side, (s + 1) * side * side), shape: [side, side] });
    box.title = `training digit #${part.index[s]}, score ${part.score[s].toFixed(3)}`;
    box.append(patch, heat, make("figcaption", "", `#${part.index[s]}`));
    return box;
  }));
}

/**
 * Show the card for the selection.
 * @param {ReturnType<typeof buildConceptCard>} view
 * @param {object|null} card  state.card: {model, layer, hidden, status, data, error}
 * @param {{hidden: number|null, layer?: string|null}} selection
 * @param {object|null} frame  the frame shown; its heatmap is the channel's CRP map once it answers the selection
 * @param {boolean} empty  nothing drawn: nothing live to show
 */
export function updateConceptCard(view, card, selection, frame, empty) {
  const { hidden } = selection;
  const layer = selection.layer ?? null;
  const open = hidden !== null;
  view.hint.hidden = open;
  view.body.hidden = !open;
  if (!open) return;
  const name = layer === null ? `fc1 unit ${hidden}` : `${layer} channel ${hidden}`;
  view.heading.textContent = name;
  // A cnn's frame carries its conv layers only (fc1's arrays are null): an fc1 unit has its samples, no live facts.
  const answered = frame?.channels?.[layer] && frame.hidden === hidden && frame.layer === layer;
  if (answered && !empty) {
    const facts = liveFacts(frame, layer, hidden);
    const rank = facts.rank === null ? "not among those for it" : `rank ${facts.rank} of ${facts.of}`;
    view.facts.textContent = `Relevance for '${frame.target}' ${signed(facts.relevance)} · ${rank}`;
    view.now.box.hidden = !facts.map;
    if (facts.map) paintInk(view.now.canvas, facts.map);
  } else {
    view.facts.textContent = empty ? "Draw a digit to see what it does in your drawing." : "";
    view.now.box.hidden = true;
  }
  const ownMap = answered && !empty && frame.heatmap && frame.mode === "crp";
  view.live.box.hidden = !ownMap;
  if (ownMap) paintRelevance(view.live.canvas, frame.heatmap);
  renderFeeds(view, answered && !empty ? frame : null, layer, hidden);

  const ready = card?.status === "ready" && card.hidden === hidden && (card.layer ?? null) === layer ? card : null;
  const key = ready ? `${ready.model}/${layer}/${hidden}` : `${card?.status}/${layer}/${hidden}`;
  if (key === view.shown) return;
  view.shown = key;
  if (!ready) {
    const text = card?.status === "error" ? `Reference samples unavailable: ${card.error}` : "Loading reference samples…";
    view.relmax.replaceChildren(make("p", "concept-hint", text));
    view.actmax.replaceChildren();
    return;
  }
  samples(view.relmax, ready.data.relmax);
  samples(view.actmax, ready.data.actmax);
}
