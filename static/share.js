// Share links: the drawing, model, method, rule and selection in the URL
// fragment (never sent to the server), compact enough for any browser; a
// drawing too long for that is simplified (Douglas–Peucker) until it fits.
//
// Fragment: `#v=1&m=<model>&x=<method>&r=<rule>&k=<knocked-out neurons, comma-separated>&o=<output>&h=<hidden>
// &c=<versus class>&a=<0|1>&i=<0|1>&l=<layer of a cnn's channel h>&s=<strokes>`, or `&p=<photo>` in place of `s`:
// a photo's 28 × 28 model input, base64url of its bytes (row-major, 0 paper … 255 ink; 1,046 characters);
// `s` is base64url of, per stroke, its point count (2 bytes, big-endian) and each point as 12-bit
// x and y (3 bytes): 1/4096 of the pad, far below a screen pixel.

/** Longest link produced, in characters: the classic safe limit for a URL anywhere (browsers,
 *  e-mail, chat clients); Chromium itself accepts 2 MB, older browsers and servers ~2,000. */
export const MAX_LINK_CHARS = 2000;
const FORMAT = "1";
/** A photo's model input: 28 × 28 bytes (protocol.md, "photo"). */
const PHOTO_BYTES = 784;
const STEPS = 4095;
/** Douglas–Peucker tolerances tried in turn, in pad fractions (the pen is ~0.055 wide). */
const TOLERANCES = [0.0015, 0.003, 0.006, 0.012, 0.024];
/** Neuron and class indices a link may carry; those the served model lacks are dropped (state.js). */
const MAX_INDEX = 4096;

function toBase64Url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function fromBase64Url(text) {
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

const quantise = (value) => Math.round(Math.min(1, Math.max(0, value)) * STEPS);

/** Strokes → bytes (see the header). */
export function packStrokes(strokes) {
  const bytes = [];
  for (const points of strokes) {
    bytes.push(points.length >> 8, points.length & 255);
    for (const [x, y] of points) {
      const [qx, qy] = [quantise(x), quantise(y)];
      bytes.push(qx >> 4, ((qx & 15) << 4) | (qy >> 8), qy & 255);
    }
  }
  return Uint8Array.from(bytes);
}

/** Bytes → strokes; throws on a truncated or malformed buffer. */
export function unpackStrokes(bytes) {
  const strokes = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + 2 > bytes.length) throw new Error("Expected a stroke's point count, got the end of the link");
    const count = (bytes[at] << 8) | bytes[at + 1];
    at += 2;
    if (count === 0 || at + 3 * count > bytes.length) throw new Error(`Expected ${count} points, got ${Math.floor((bytes.length - at) / 3)}`);
    const points = [];
    for (let k = 0; k < count; k += 1, at += 3) {
      const qx = (bytes[at] << 4) | (bytes[at + 1] >> 4);
      const qy = ((bytes[at + 1] & 15) << 8) | bytes[at + 2];
      points.push([qx / STEPS, qy / STEPS]);
    }
    strokes.push(points);
  }
  return strokes;
}

function distanceToSegment([px, py], [ax, ay], [bx, by]) {
  const [dx, dy] = [bx - ax, by - ay];
  const length = dx * dx + dy * dy;
  const t = length ? Math.min(1, Math.max(0, ((px - ax) * dx + (py - ay) * dy) / length)) : 0;
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

/** Douglas–Peucker (1973): the fewest points within `tolerance` of the stroke, ends kept. */
export function simplifyStroke(points, tolerance) {
  if (points.length <= 2) return points;
  let [farthest, index] = [0, 0];
  for (let k = 1; k < points.length - 1; k += 1) {
    const distance = distanceToSegment(points[k], points[0], points[points.length - 1]);
    if (distance > farthest) [farthest, index] = [distance, k];
  }
  if (farthest <= tolerance) return [points[0], points[points.length - 1]];
  const left = simplifyStroke(points.slice(0, index + 1), tolerance);
  return [...left.slice(0, -1), ...simplifyStroke(points.slice(index), tolerance)];
}

function fragment(strokes, { config, selection }, photo) {
  const params = new URLSearchParams({ v: FORMAT, m: config.model, x: config.method, r: config.rule });
  if (config.knockout?.length) params.set("k", config.knockout.join(","));
  if (selection.output !== null) params.set("o", String(selection.output));
  if (selection.versus !== null && selection.versus !== undefined) params.set("c", String(selection.versus));
  if (selection.hidden !== null) params.set("h", String(selection.hidden));
  if (selection.layer && selection.hidden !== null) params.set("l", selection.layer);
  if (selection.alone) params.set("a", "1");
  if (selection.implicit) params.set("i", "1");
  if (photo) params.set("p", toBase64Url(photo));
  else params.set("s", toBase64Url(packStrokes(strokes)));
  return `#${params}`;
}

const countPoints = (strokes) => strokes.reduce((sum, points) => sum + points.length, 0);

/**
 * The share link of a drawing with its settings.
 * @param {string} base  the page's address without fragment (location.origin + pathname + search)
 * @param {number[][][]} strokes  points per stroke
 * @param {{config: object, selection: object}} settings
 * @param {Uint8Array|null} photo  a photo's model input (photo.js), shared in place of strokes
 * @returns {{url: string, points: number, kept: number}|null}  kept < points: simplified; null: no
 *   link fits MAX_LINK_CHARS even simplified
 */
export function shareLink(base, strokes, settings, photo = null) {
  if (photo) {
    const url = base + fragment([], settings, photo);
    return url.length <= MAX_LINK_CHARS ? { url, points: 0, kept: 0 } : null;
  }
  const points = countPoints(strokes);
  for (const tolerance of [0, ...TOLERANCES]) {
    const shown = tolerance ? strokes.map((stroke) => simplifyStroke(stroke, tolerance)) : strokes;
    const url = base + fragment(shown, settings, null);
    if (url.length <= MAX_LINK_CHARS) return { url, points, kept: countPoints(shown) };
  }
  return null;
}

/** A layer's name as welcome.model.units spell them ("conv1"); the server refuses one its model lacks. */
const LAYER_NAME = /^[a-z][a-z0-9_]{0,15}$/;

function index(params, key) {
  if (!params.has(key)) return null;
  const value = Number(params.get(key));
  if (!Number.isInteger(value) || value < 0 || value >= MAX_INDEX) throw new Error(`Expected ${key} in 0..${MAX_INDEX - 1}, got ${params.get(key)}`);
  return value;
}

/**
 * A share fragment read back: {strokes, photo, config, selection} (photo: {data: null, input, preview: null}
 * or null); null when the fragment is not a share
 * link; throws (naming the problem) when it is one but malformed.
 * @param {string} hash  location.hash
 */
export function readShareLink(hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  if (params.get("v") !== FORMAT || !(params.has("s") || params.has("p"))) return null;
  const config = Object.fromEntries(
    [["model", "m"], ["method", "x"], ["rule", "r"]].filter(([, key]) => params.get(key)).map(([name, key]) => [name, params.get(key)]));
  const knockout = params.get("k") ? params.get("k").split(",").map((j) => index(new URLSearchParams({ k: j }), "k")) : [];
  if (knockout.length) config.knockout = knockout;
  const layer = params.get("l");
  if (layer !== null && !LAYER_NAME.test(layer)) throw new Error(`Expected a layer name in l, got ${layer.slice(0, 20)}`);
  const selection = {
    output: index(params, "o"), hidden: index(params, "h"), versus: index(params, "c"),
    alone: params.get("a") === "1", implicit: params.get("i") === "1", layer,
  };
  if (params.has("p")) {
    const input = fromBase64Url(params.get("p"));
    if (input.length !== PHOTO_BYTES) throw new Error(`Expected a photo of ${PHOTO_BYTES} bytes, got ${input.length}`);
    return { strokes: [], photo: { data: null, input, preview: null }, config, selection };
  }
  return { strokes: unpackStrokes(fromBase64Url(params.get("s"))), photo: null, config, selection };
}
