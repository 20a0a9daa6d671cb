// Paint maps into canvases, one canvas pixel per map pixel (the canvas takes
// the map's shape): relevance on the diverging map, images in ink. Pure apart
// from writing the pixels of the canvas it is given.

import { diverging, divergingGradient, sequential } from "./colormap.js";
import { maxAbs } from "./arrays.js";

/** Grey level of the input under an overlaid heatmap: ink shows, the colours stay readable. */
const OVERLAY_INK = 0.55;

/**
 * Size `canvas` to `[rows, cols]` and paint pixel i (row-major) the colour `colourAt(i)`.
 * @param {HTMLCanvasElement} canvas
 * @param {number[]} shape
 * @param {(i: number) => number[]} colourAt  [r, g, b] in 0–255
 */
export function writePixels(canvas, [rows, cols], colourAt) {
  if (canvas.width !== cols || canvas.height !== rows) {
    canvas.width = cols;
    canvas.height = rows;
  }
  const context = canvas.getContext("2d");
  const image = context.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i += 1) {
    const [r, g, b] = colourAt(i);
    image.data.set([r, g, b, 255], i * 4);
  }
  context.putImageData(image, 0, 0);
}

/**
 * Relevance on the diverging map, scaled so ±max|R| is the darkest red/blue.
 * With `underlay` (the model input, values in [0, 1]) the input is drawn in
 * grey and the relevance colours are mixed over it by their strength.
 * @param {HTMLCanvasElement} canvas
 * @param {{values: Float32Array, shape: number[]}} map  relevance per pixel
 * @param {{values: Float32Array}|null} underlay
 * @param {number|null} at  the max|R| painted as the darkest colour (legend.js: a CRP map on its
 *   class's scale); null: the map's own max|R|
 * @returns {number} max|R|, the scale the colours were drawn at
 */
export function paintRelevance(canvas, map, underlay = null, at = null) {
  const scale = at || maxAbs(map.values) || 1;
  writePixels(canvas, map.shape, (i) => {
    const v = map.values[i] / scale;
    const colour = diverging(v);
    if (!underlay) return colour;
    const paper = sequential(underlay.values[i] * OVERLAY_INK);
    const alpha = Math.min(1, Math.abs(v) * 1.5);
    return colour.map((c, k) => Math.round(c * alpha + paper[k] * (1 - alpha)));
  });
  return scale;
}

/**
 * A grey image in [0, 1] (1 = ink) as dark ink on white paper.
 * @param {HTMLCanvasElement} canvas
 * @param {{values: Float32Array, shape: number[]}} image
 */
export function paintInk(canvas, image) {
  writePixels(canvas, image.shape, (i) => sequential(image.values[i]));
}

/** Three significant digits, a true minus sign. */
export function formatNumber(value) {
  const text = Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
  return text.replace("-", "−");
}

/**
 * Fill a legend element once: a gradient bar and three tick labels whose
 * text `updateLegend` changes.
 * @param {HTMLElement} element
 * @returns {{low: HTMLElement, high: HTMLElement, against: HTMLElement, towards: HTMLElement}}
 */
export function buildLegend(element) {
  element.replaceChildren();
  const bar = document.createElement("div");
  bar.className = "legend-bar";
  bar.style.background = divergingGradient();
  const ticks = document.createElement("div");
  ticks.className = "legend-ticks";
  const [low, zero, high] = ["span", "span", "span"].map((tag) => document.createElement(tag));
  zero.textContent = "0";
  ticks.append(low, zero, high);
  const words = document.createElement("div");
  words.className = "legend-words";
  const [against, towards] = ["span", "span"].map((tag) => document.createElement(tag));
  words.append(against, towards);
  element.append(bar, ticks, words);
  return { low, high, against, towards };
}

/**
 * Show the scale of the map just painted.
 * @param {ReturnType<typeof buildLegend>} legend
 * @param {number|null} scale   max|R|; null: no map to read (nothing drawn), no numbers
 * @param {string} against words under the blue end
 * @param {string} towards words under the red end
 */
export function updateLegend(legend, scale, against, towards) {
  legend.low.textContent = scale === null ? "" : formatNumber(-scale);
  legend.high.textContent = scale === null ? "" : `+${formatNumber(scale)}`;
  legend.against.textContent = against;
  legend.towards.textContent = towards;
}
