// The neuron card: what the selected hidden neuron does in this drawing, the
// weight template it has learned, and the training digits that excite it
// most and that it mattered most for (GET /api/models/{name}/neurons/{j}),
// each over its own conditional heatmap: where in that digit the neuron found
// evidence for the digit's answer (CRP), as zennit-crp's reference samples show them.

import { decode, maxAbs } from "./arrays.js";
import { paintInk, paintRelevance } from "./heatmap.js";

/** An element `tag` with a class and a text. */
export function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A figure with a pixelated canvas and its caption. */
export function figure(caption) {
  const box = make("figure", "card-figure");
  const canvas = make("canvas", "pixelated"); // sized by the map painted into it (heatmap.js)
  box.append(canvas, make("figcaption", "", caption));
  return { box, canvas };
}

/**
 * Build the card's fixed parts inside `element`.
 * @param {HTMLElement} element
 */
export function buildCard(element) {
  const heading = make("h3", "card-title");
  const facts = make("p", "card-facts");
  const drawing = figure("In your drawing");
  const weights = figure("Weights it learned (red +, blue −)");
  const row = make("div", "card-row");
  row.append(drawing.box, weights.box);
  const activationTitle = make("h4", "", "Training digits that make it fire most (red: where it found evidence for their answer)");
  const activation = make("div", "thumbs");
  const relevanceTitle = make("h4", "", "Training digits where it mattered most for the answer");
  const relevance = make("div", "thumbs");
  const hint = make("p", "card-hint", "Tap a hidden neuron in the network to see what it has learned.");
  const body = make("div", "card-body");
  body.append(heading, facts, row, activationTitle, activation, relevanceTitle, relevance);
  element.replaceChildren(hint, body);
  return { hint, body, heading, facts, drawing, weights, activation, relevance, shown: null };
}

function thumbnails(container, digits) {
  container.replaceChildren(
    ...digits.map((digit) => {
      const box = make("figure", "thumb");
      const canvas = make("canvas", "pixelated");
      // Its own CRP map over the digit in grey (a card from an older server has the digit alone).
      if (digit.heatmap) paintRelevance(canvas, decode(digit.heatmap), decode(digit.image));
      else paintInk(canvas, decode(digit.image));
      box.title = `training digit #${digit.index}, value ${digit.value.toFixed(2)}`;
      box.append(canvas, make("figcaption", "", `a ${digit.label}`));
      return box;
    }),
  );
}

/**
 * Show the card for the selection.
 * @param {ReturnType<typeof buildCard>} view
 * @param {object|null} card   state.card
 * @param {number|null} hidden the selected hidden neuron
 * @param {object|null} frame  the frame shown (its heatmap is the neuron's map when mode is crp/hidden)
 */
export function updateCard(view, card, hidden, frame) {
  const open = hidden !== null;
  view.hint.hidden = open;
  view.body.hidden = !open;
  if (!open) return;
  view.heading.textContent = `Hidden neuron ${hidden}`;
  if (frame && hidden < frame.activations.length) {
    const activation = frame.activations[hidden].toFixed(2);
    const relevance = frame.edges[hidden];
    view.facts.textContent = `Activation now ${activation} · relevance for '${frame.target}' ${relevance >= 0 ? "+" : "−"}${Math.abs(relevance).toPrecision(2)}`;
  }
  const ownMap = frame?.heatmap && frame.hidden === hidden && (frame.mode === "crp" || frame.mode === "hidden");
  view.drawing.box.hidden = !ownMap;
  if (ownMap) paintRelevance(view.drawing.canvas, frame.heatmap);

  const ready = card?.status === "ready" && card.hidden === hidden ? card : null;
  const key = ready ? `${ready.model}/${ready.hidden}` : null;
  if (key === view.shown) return;
  view.shown = key;
  view.weights.box.hidden = !ready;
  if (!ready) {
    const text = card?.status === "error" ? `Reference digits unavailable: ${card.error}` : "Loading reference digits…";
    view.activation.replaceChildren(make("p", "card-hint", text));
    view.relevance.replaceChildren();
    return;
  }
  const weights = decode(ready.data.weights);
  if (maxAbs(weights.values) > 0) paintRelevance(view.weights.canvas, weights);
  thumbnails(view.activation, ready.data.top_activation);
  thumbnails(view.relevance, ready.data.top_relevance);
}
