// The heatmap's colour scale and its legend, with real numbers (issue 11, "Honest scales").
//
// A CRP map is painted on the scale of its class's LRP map by default
// (frame.class_max_abs): a neuron that carries little of the class's evidence
// looks faint. A switch paints it on its own scale instead. The legend says
// which scale is shown, with the numbers, and the neuron's share. Maps of
// magnitudes (Saliency, SmoothGrad) get a one-sided legend, 0 … max; an
// empty map says so in words.

import { RDBU } from "./colormap.js";
import { maxAbs } from "./arrays.js";
import { formatNumber } from "./heatmap.js";
import { isSigned } from "./summary.js";

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** CSS gradient of the map's colours: both arms for signed maps, white → red for magnitudes. */
function gradient(signed) {
  const anchors = signed ? RDBU : RDBU.slice(Math.floor(RDBU.length / 2));
  const stops = anchors.map((hex, i) => `${hex} ${((i / (anchors.length - 1)) * 100).toFixed(1)}%`);
  return `linear-gradient(to right, ${stops.join(", ")})`;
}

/**
 * The scale a map is painted at.
 * @param {object} frame  the frame whose heatmap is shown
 * @param {boolean} ownScale  the visitor asked for the map's own scale
 * @returns {{scale: number, own: number, shared: boolean}} scale: max|R| painted as the darkest colour;
 *   own: the map's own max|R|; shared: painted on the class's LRP scale
 */
export function mapScale(frame, ownScale) {
  const own = maxAbs(frame.heatmap.values);
  const shared = frame.mode === "crp" && !ownScale && frame.class_max_abs > 0;
  return { scale: shared ? Math.max(frame.class_max_abs, own) : own, own, shared };
}

/** "12 %", "< 1 %": a share in percent, with a no-break space. */
function percent(share) {
  const value = share * 100;
  return value > 0 && value < 1 ? "<\u00a01\u00a0%" : `${Math.round(value)}\u00a0%`;
}

/** The sentence under the legend: which scale, with its numbers. Pure. */
export function scaleNote(frame, { scale, own, shared }) {
  if (frame.mode === "crp") {
    const share = frame.neuron_share === null ? "" :
      `Neuron ${frame.hidden} carries ${percent(frame.neuron_share)} of the relevance reaching the hidden layer for '${frame.target}'. `;
    return shared
      ? `${share}Drawn on the scale of the whole LRP map of '${frame.target}' (max |R| ${formatNumber(scale)}); this map's own peak is ${formatNumber(own)}.`
      : `${share}Drawn on this map's own scale (max |R| ${formatNumber(own)}); the LRP map of '${frame.target}' peaks at ${formatNumber(frame.class_max_abs ?? own)}.`;
  }
  if (frame.mode === "hidden" && frame.knockout?.includes(frame.hidden)) {
    return `Neuron ${frame.hidden} is switched off: it passes nothing on to the outputs.`;
  }
  if (frame.mode === "hidden" && frame.neuron_silent) {
    return `Neuron ${frame.hidden} is silent for this drawing: the map splits its input (ε rule, whatever the rule chosen); red pushes it toward firing, blue away.`;
  }
  return `max |R| ${formatNumber(own)}: the darkest colour.`;
}

/**
 * Build the legend once: bar, numbers and words in `element` (on the stage, one line each), the
 * sentence about the scale and the own-scale switch in `details` (below the stage: a phone's stage
 * has no room for them).
 * @param {HTMLElement} element
 * @param {HTMLElement} details
 * @param {(own: boolean) => void} onOwnScale  called when the visitor flips the own-scale switch
 */
export function createScaleLegend(element, details, onOwnScale) {
  element.replaceChildren();
  const bar = make("div", "legend-bar");
  const ticks = make("div", "legend-ticks");
  const [low, zero, high] = [make("span"), make("span", "", "0"), make("span")];
  ticks.append(low, zero, high);
  const words = make("div", "legend-words");
  const [against, towards] = [make("span"), make("span")];
  words.append(against, towards);
  const note = make("p", "legend-note");
  note.dataset.part = "scale-note";
  const label = make("label", "own-scale");
  const own = make("input");
  own.type = "checkbox";
  own.id = "own-scale";
  label.append(own, " This map's own scale");
  own.addEventListener("change", () => onOwnScale(own.checked));
  element.append(bar, ticks, words);
  details.append(note, label);

  /**
   * Show the legend of `frame`'s map, painted at `scales` (mapScale).
   * @param {object|null} frame  null: nothing drawn, no numbers
   * @param {ReturnType<typeof mapScale>|null} scales
   * @param {[string, string]} ends  words under the low and high ends
   * @param {object} welcome
   * @param {boolean} ownScale
   */
  function render(frame, scales, [lowWords, highWords], welcome, ownScale) {
    const signed = !frame || frame.mode !== "attribution" || isSigned(welcome, frame.method);
    bar.style.background = gradient(signed);
    const blank = !frame || !scales;
    const isEmpty = !blank && scales.own === 0;
    // One-sided for magnitudes: 0 at the white end, max at the red end.
    low.textContent = blank ? "" : signed ? (isEmpty ? "" : formatNumber(-scales.scale)) : "0";
    zero.textContent = signed ? "0" : "";
    high.textContent = blank || isEmpty ? "" : `${signed ? "+" : ""}${formatNumber(scales.scale)}`;
    // An empty map says so where the words for its ends would be.
    words.dataset.part = isEmpty ? "empty-map" : "";
    words.classList.toggle("legend-empty", isEmpty);
    // Short enough for one line beside a phone's heatmap (the sentence below the stage says why).
    against.textContent = isEmpty ? "This map is empty." : signed ? lowWords : "";
    towards.textContent = isEmpty ? "" : highWords;
    note.hidden = blank || isEmpty;
    note.textContent = blank || isEmpty ? "" : scaleNote(frame, scales);
    label.hidden = !frame || frame.mode !== "crp";
    own.checked = ownScale;
    shownLegend = { signed, low: low.textContent, zero: zero.textContent, high: high.textContent,
                    against: against.textContent, towards: towards.textContent };
  }

  let shownLegend = { signed: true, low: "", zero: "0", high: "", against: "", towards: "" };

  /** What the legend shows now, word for word: the exported picture copies it (exporter.js). */
  function shown() {
    return shownLegend;
  }

  return { render, shown };
}
