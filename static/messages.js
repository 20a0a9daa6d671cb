// Client → server messages of docs/protocol.md, built from the state. Pure:
// `socket.js` adds the `seq`.

import { photoMessage } from "./photo.js";

/** Canvas fractions carry 4 decimals: 1/10 000 of the pad is far below a screen pixel. */
function round4(value) {
  return Math.round(value * 1e4) / 1e4;
}

/**
 * `stroke` messages appending `points` to stroke `id`, split so none holds
 * more than `maxPerMessage` points (welcome.limits.max_points_per_message).
 * @param {number} id
 * @param {number[][]} points  [x, y] in [0, 1]
 * @param {number} maxPerMessage
 */
export function strokeMessages(id, points, maxPerMessage) {
  const messages = [];
  for (let start = 0; start < points.length; start += maxPerMessage) {
    const chunk = points.slice(start, start + maxPerMessage).map(([x, y]) => [round4(x), round4(y)]);
    messages.push({ type: "stroke", id, points: chunk });
  }
  return messages;
}

/**
 * The `select` message of a selection. "Neuron alone" sends `output: null`
 * with the hidden neuron (docs/protocol.md, "select", last row of the table);
 * a selection with a `layer` (a cnn's conv channel) names it.
 */
export function selectMessage({ output, hidden, alone, versus = null, layer = null }) {
  const classless = alone && hidden !== null;
  const message = { type: "select", output: classless ? null : output, hidden };
  // A cnn's channel: `hidden` of conv layer `layer`; absent means fc1 (docs/protocol.md, "select")
  if (layer !== null && hidden !== null) message.layer = layer;
  // "why output and not versus" (docs/protocol.md, "Contrast"); absent: no contrast
  if (versus !== null && !classless && output !== null) message.versus = versus;
  return message;
}

/**
 * What a fresh connection needs to show what this page shows: our config
 * where it differs from the server's, every stroke, then the selection.
 * @param {object} state   the page state
 * @param {object} welcome the connection's first welcome
 */
export function replayMessages(state, welcome) {
  const messages = [];
  const change = {};
  for (const key of ["model", "method", "rule"]) {
    if (state.config && state.config[key] !== welcome.state[key]) change[key] = state.config[key];
  }
  const knockout = state.config?.knockout ?? [];
  if (knockout.length) change.knockout = knockout;
  if (Object.keys(change).length) messages.push({ type: "configure", ...change });
  if (state.drawing.photo) messages.push(photoMessage(state.drawing.photo)); // strokes after it start anew
  const maxPerMessage = welcome.limits.max_points_per_message;
  for (const stroke of state.drawing.strokes) {
    if (stroke.points.length) messages.push(...strokeMessages(stroke.id, stroke.points, maxPerMessage));
  }
  const { output, hidden } = state.selection;
  if (output !== null || hidden !== null) messages.push(selectMessage(state.selection));
  return messages;
}
