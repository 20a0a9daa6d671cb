// Wire arrays (docs/protocol.md, "Array encoding") → typed arrays. Pure.

const TYPES = { u8: Uint8Array, i8: Int8Array, f32: Float32Array, u4: Uint8Array };

/**
 * Decode `{dtype, shape, scale?, data}` into row-major floats.
 * `data` is standard base64 (RFC 4648 §4); f32 is little-endian, as every
 * browser that runs this page is.
 * @param {{dtype: string, shape: number[], scale?: number, data: string}} array
 * @returns {{values: Float32Array, shape: number[]}}
 */
export function decode(array) {
  const Typed = TYPES[array.dtype];
  if (!Typed) throw new Error(`Expected dtype u8, u4, i8 or f32, got ${JSON.stringify(array.dtype)}`);
  const binary = atob(array.data);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  const count = array.shape.reduce((a, b) => a * b, 1);
  const raw = array.dtype === "u4" ? unpackNibbles(bytes, count) : new Typed(bytes.buffer);
  if (raw.length !== count) {
    throw new Error(`Expected ${count} values for shape [${array.shape}], got ${raw.length}`);
  }
  const scale = array.scale ?? 1;
  return { values: Float32Array.from(raw, (v) => v * scale), shape: array.shape };
}

/** 4-bit values, two a byte, the first in the high nibble (docs/protocol.md, "Array encoding"). */
function unpackNibbles(bytes, count) {
  if (bytes.length !== Math.ceil(count / 2)) return new Uint8Array(0); // the length check below names it
  const values = new Uint8Array(count);
  for (let i = 0; i < count; i += 1) values[i] = i % 2 ? bytes[i >> 1] & 15 : bytes[i >> 1] >> 4;
  return values;
}

/** Largest absolute value of a typed array (0 for an empty one). */
export function maxAbs(values) {
  let max = 0;
  for (const v of values) max = Math.max(max, Math.abs(v));
  return max;
}

/**
 * A `frame` message with its arrays decoded; `heatmap` stays null while an on-pause method is pending.
 * `activations`, `hidden_relevance` and `edges` (R(j→target) of each hidden neuron j) become Float32Arrays of H
 * (null in a cnn's frame, which carries `channels` instead); a cnn's `channels` and `feeds` are decoded too
 * (null for an MLP, and `feeds` without a conv2 channel selected).
 */
export function decodeFrame(message) {
  const optional = (array) => (array ? decode(array).values : null);
  return {
    ...message,
    activations: optional(message.activations),
    hidden_relevance: optional(message.hidden_relevance),
    edges: optional(message.edges),
    input: decode(message.input),
    heatmap: message.heatmap ? decode(message.heatmap) : null,
    channels: message.channels ? decodeChannels(message.channels) : null,
    feeds: message.feeds ? { layer: message.feeds.layer, relevance: decode(message.feeds.relevance).values } : null,
  };
}

/**
 * A cnn frame's `channels` ({layer: {activations: u4 [C, h, w], relevance: i8 [C]}}, docs/protocol.md):
 * each layer's activations as {values, shape} and its relevance as a Float32Array of C.
 */
function decodeChannels(channels) {
  return Object.fromEntries(Object.entries(channels).map(([layer, { activations, relevance }]) =>
    [layer, { activations: decode(activations), relevance: decode(relevance).values }]));
}

/** A `comparison` message with each map's heatmap decoded. */
export function decodeComparison(message) {
  return {
    ...message,
    maps: message.maps.map((map) => ({ ...map, heatmap: map.heatmap ? decode(map.heatmap) : null })),
  };
}
