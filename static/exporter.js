// Export what the page shows: a PNG of the panel (drawing, model input,
// heatmap with its title and scale, prediction) and a JSON file (strokes,
// frame data, versions of model and rule) that the page can load again.

import { css, diverging } from "./colormap.js";
import { maxAbs } from "./arrays.js";
import { decodeBase64, encodeInput } from "./photo.js";

/** `format` of an exported JSON file; `version` changes if its fields change meaning. */
export const EXPORT_FORMAT = "xai-digit-export";
export const EXPORT_VERSION = 1;

/** Save `blob` as `name` through the browser's download. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function wrap(context, text, x, y, width, lineHeight) {
  let line = "";
  for (const word of text.split(" ")) {
    const next = line ? `${line} ${word}` : word;
    if (context.measureText(next).width > width && line) {
      context.fillText(line, x, y);
      [line, y] = [word, y + lineHeight];
    } else line = next;
  }
  if (line) context.fillText(line, x, y);
  return y + lineHeight;
}

function pixelated(context, source, x, y, size) {
  context.imageSmoothingEnabled = false;
  context.drawImage(source, x, y, size, size);
  context.strokeStyle = "#cbd5e1";
  context.strokeRect(x + 0.5, y + 0.5, size - 1, size - 1);
}

/**
 * The panel as a PNG blob, 1200 × 640 px.
 * @param {{pad: HTMLCanvasElement, input: HTMLCanvasElement, heatmap: HTMLCanvasElement}} canvases
 * @param {{title: string, verdict: string, summary: string, legend: ReturnType<ReturnType<typeof import("./legend.js").createScaleLegend>["shown"]>, side: number|null}} text
 *   legend: the legend on screen (legend.js `shown`), copied word for word with its colours, so the picture's
 *   scale is the one its colours were painted at; side: of the model's square input image (state.js
 *   modelSizes), null before the first welcome
 * @returns {Promise<Blob>}
 */
export function panelPng(canvases, { title, verdict, summary, legend, side }) {
  const canvas = document.createElement("canvas");
  [canvas.width, canvas.height] = [1200, 640];
  const context = canvas.getContext("2d");
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.fillStyle = "#0f172a";
  context.font = "700 28px system-ui, sans-serif";
  context.fillText(verdict, 32, 48);
  context.font = "600 22px system-ui, sans-serif";
  context.fillText(title, 32, 84);

  context.font = "16px system-ui, sans-serif";
  context.fillStyle = "#475569";
  context.fillText("Your drawing", 32, 124);
  context.fillText(side ? `What the model sees (${side} × ${side})` : "What the model sees", 472, 124);
  context.fillText("Explanation", 752, 124);
  context.imageSmoothingEnabled = true;
  context.drawImage(canvases.pad, 32, 136, 400, 400);
  context.strokeStyle = "#94a3b8";
  context.strokeRect(32.5, 136.5, 399, 399);
  pixelated(context, canvases.input, 472, 136, 240);
  pixelated(context, canvases.heatmap, 752, 136, 400);

  // The colour scale under the heatmap, as on the page: RdBu from −max to +max, or white → red for magnitudes.
  for (let k = 0; k < 400; k += 1) {
    const position = k / 399;
    context.fillStyle = css(diverging(legend.signed ? position * 2 - 1 : position));
    context.fillRect(752 + k, 548, 1, 14);
  }
  context.fillStyle = "#0f172a";
  context.font = "15px system-ui, sans-serif";
  const right = (text, y) => context.fillText(text, 1152 - context.measureText(text).width, y);
  if (legend.low) context.fillText(legend.low, 752, 580);
  if (legend.zero) context.fillText(legend.zero, 948, 580);
  if (legend.high) right(legend.high, 580);
  context.fillStyle = "#475569";
  if (legend.against) context.fillText(legend.against, 752, 600);
  if (legend.towards) right(legend.towards, 600);
  context.fillStyle = "#0f172a";
  context.font = "16px system-ui, sans-serif";
  wrap(context, summary, 32, 570, 680, 22);
  return new Promise((resolve, reject) => canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("PNG encoding failed"))), "image/png"));
}

const list = (typed) => Array.from(typed, (value) => Math.round(value * 1e6) / 1e6);

/**
 * The JSON export of the page's state: drawing, settings, the frame on screen, versions.
 * @param {object} state  the page state (state.js)
 * @param {object|null} models  GET /api/models (for the weights' sha256), if it answered
 */
export function exportDocument(state, models) {
  const { frame, welcome, config, selection } = state;
  const model = models?.models.find((entry) => entry.name === config.model) ?? null;
  const rule = welcome.rules.find((entry) => entry.name === config.rule) ?? null;
  return {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    created: new Date().toISOString(),
    protocol: welcome.protocol,
    versions: {
      model: { name: config.model, layers: welcome.model.layers, sha256: model?.sha256 ?? null, test_accuracy: model?.test_accuracy ?? null },
      method: welcome.methods.find((entry) => entry.name === config.method) ?? { name: config.method },
      rule: rule ?? { name: config.rule },
    },
    config,
    selection,
    strokes: state.drawing.strokes.filter((stroke) => stroke.points.length).map((stroke) => stroke.points),
    // a photo in place of strokes: its model input, u8 row-major, base64 (docs/protocol.md, "photo")
    photo: state.drawing.photo?.input ? encodeInput(state.drawing.photo.input) : null,
    frame: frame && {
      seq: frame.seq, model: frame.model, method: frame.method, rule: frame.rule, mode: frame.mode,
      output: frame.output, hidden: frame.hidden, target: frame.target, prediction: frame.prediction,
      probabilities: Array.from(frame.probabilities), activations: list(frame.activations),
      heatmap: frame.heatmap && { shape: frame.heatmap.shape, max_abs: maxAbs(frame.heatmap.values), values: list(frame.heatmap.values) },
      input: { shape: frame.input.shape, values: list(frame.input.values) },
    },
  };
}

/**
 * An exported document read back as {strokes, photo, config, selection}; throws naming what is wrong.
 * @param {string} text  the file's contents
 */
export function readExport(text) {
  const document = JSON.parse(text);
  if (document?.format !== EXPORT_FORMAT || document.version !== EXPORT_VERSION) {
    throw new Error(`Expected a ${EXPORT_FORMAT} file, version ${EXPORT_VERSION}`);
  }
  const point = (p) => Array.isArray(p) && p.length === 2 && p.every((v) => typeof v === "number" && v >= 0 && v <= 1);
  if (!Array.isArray(document.strokes) || !document.strokes.every((stroke) => Array.isArray(stroke) && stroke.every(point))) {
    throw new Error("Expected strokes as lists of [x, y] in [0, 1]");
  }
  const { output = null, hidden = null, alone = false, implicit = false, versus = null, layer = null } = document.selection ?? {};
  if (layer !== null && typeof layer !== "string") throw new Error(`Expected selection.layer a layer name or null, got ${typeof layer}`);
  let photo = null;
  if (document.photo !== undefined && document.photo !== null) {
    const input = typeof document.photo === "string" ? decodeBase64(document.photo) : null;
    const square = input && input.length > 0 && Number.isInteger(Math.sqrt(input.length));
    if (!square) throw new Error("Expected photo as the base64 of a square input image's bytes");
    photo = { data: null, input, preview: null };
  }
  return { strokes: document.strokes, photo, config: document.config ?? null, selection: { output, hidden, alone, implicit, versus, layer } };
}
