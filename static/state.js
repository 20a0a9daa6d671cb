// The page's one state object, changed only by `reduce(state, action)`.
//
// Data flows one way: input (pointer, keys, socket messages) → action →
// reduce → new state → render. Views never write back into the state; they
// call the handlers main.js gives them, which dispatch actions. The state is
// plain data (decoded arrays are typed arrays), so it can be logged or saved.

/** @returns {object} the state before the server has said anything */
export function initialState() {
  return {
    connection: { status: "connecting", retryInMs: null, code: null },
    welcome: null, // last `welcome` message: model, models, methods, rules, limits
    config: null, // {model, method, rule}: ours once the first welcome set it
    // implicit: `output` is the prediction a hidden neuron was tapped under, not a class the visitor
    // chose; it follows the prediction as the drawing changes (README: "the selected, else predicted, class")
    // versus: the rival class of a contrast, "why output and not versus" (null: none)
    selection: { output: null, hidden: null, alone: false, implicit: false, versus: null },
    // photo: a photo or picture in place of strokes (photo.js): {data, input, preview}, else null
    drawing: { strokes: [], lastId: 0, version: 0, photo: null },
    // a photo sent and not yet answered: {seq, before: the drawing it replaced}, restored if refused
    photoPending: null,
    frame: null, // last `frame`, arrays decoded (arrays.decodeFrame)
    heatmapFrame: null, // last frame that carried a heatmap (on-pause methods send null while drawing)
    comparison: null, // last `comparison`, maps decoded, with the drawing version it answered
    comparing: null, // the seq of the compare request in flight, if any
    card: null, // {model, hidden, status: "loading" | "ready" | "error", data, error}
    // ownScale: a CRP map on its own scale, not its class's (legend.js); templates: the diagram shows each W1[j]
    // compareShared: the comparison's maps on one colour scale (compare.js)
    view: { overlay: false, ownScale: false, templates: false, compareShared: false },
    // sentSeq: the last seq sent; refusedSeq: the last seq the server refused (no frame answers it)
    stats: { lagMs: null, fps: 0, frames: 0, sentSeq: 0, refusedSeq: 0 },
    notice: null, // {text, code}: the last refused message or limit hit, shown in the status line
    defaults: null, // {model, method, rule}: the server's start state (first welcome), for a kiosk reset
    // {config, selection}: a shared link's or a loaded file's settings, applied at the first welcome
    requested: null,
    // {recording: points per stroke, position: points shown}: the timeline scrubber is open
    timeline: null,
  };
}

/**
 * The part of a requested {config, selection} the server of `welcome` serves: a model, method or
 * rule it lacks is left at its default; a selection outside the model is dropped.
 */
function servedRequest(requested, welcome) {
  if (!requested) return null;
  const serves = (list, name) => list.some((item) => item.name === name);
  const lists = { model: welcome.models, method: welcome.methods, rule: welcome.rules };
  const config = Object.fromEntries(Object.entries(requested.config ?? {})
    .filter(([key, name]) => key in lists && serves(lists[key], name)));
  const model = welcome.models.find((item) => item.name === (config.model ?? welcome.state.model));
  const knockout = requested.config?.knockout ?? [];
  if (knockout.length && knockout.every((j) => Number.isInteger(j) && j >= 0 && j < (model?.hidden ?? 0))) config.knockout = knockout;
  const selection = requested.selection;
  const isClass = (c) => c === null || (c >= 0 && c < modelSizes(welcome).classes);
  const fits = selection && (selection.hidden === null || selection.hidden < (model?.hidden ?? 0))
    && isClass(selection.output) && isClass(selection.versus ?? null);
  return { config, selection: fits ? selection : null };
}

/**
 * The sizes of the model a welcome describes, read off `welcome.model.layers` ([inputs, H, classes]):
 * the server writes them once (docs/protocol.md, "welcome"), so the page never does.
 * @returns {{inputs: number, side: number, hidden: number, classes: number}}  side: of the square input image
 */
export function modelSizes(welcome) {
  const layers = welcome.model.layers;
  return { inputs: layers[0], side: Math.sqrt(layers[0]), hidden: welcome.model.hidden, classes: layers[layers.length - 1] };
}

/** Number of points in the drawing. */
export function pointCount(drawing) {
  return drawing.strokes.reduce((sum, stroke) => sum + stroke.points.length, 0);
}

/** Whether the drawing has no ink: no point and no photo. */
export function isEmpty(drawing) {
  return pointCount(drawing) === 0 && !drawing.photo;
}

/**
 * The selection of hidden neuron `hidden`, explained under the selected class, else the prediction
 * (`implicit`: it then follows the prediction). Without either it can only be that neuron alone.
 */
export function hiddenSelection(state, hidden, alone) {
  const implicit = state.selection.output === null || state.selection.implicit;
  const output = (implicit ? state.frame?.prediction : state.selection.output) ?? null;
  return { output, hidden, alone: alone || output === null, implicit };
}

const reducers = {
  // A comparison asked on a connection that ended is never answered: stop waiting for it.
  connection: (state, { connection }) => ({ ...state, connection, comparing: connection.status === "open" ? state.comparing : null }),

  welcome(state, { message }) {
    // The first welcome of the page sets our config; later ones (reconnect,
    // model change) only describe the server: our config and selection are
    // replayed to it (docs/protocol.md, "Close codes").
    const first = state.config === null;
    // After a reconnect the server first describes its default model while our replayed `configure`
    // is on its way: keep describing ours until its welcome comes (unless the server lacks our model,
    // method or rule: then it refuses that configure, and its own welcome is the one that holds).
    const serves = (list, name) => list.some((item) => item.name === name);
    const ours = first || message.model.name === state.config.model || !serves(message.models, state.config.model)
      || !serves(message.methods, state.config.method) || !serves(message.rules, state.config.rule);
    const defaults = { model: message.state.model, method: message.state.method, rule: message.state.rule, knockout: [] };
    const requested = first ? servedRequest(state.requested, message) : null;
    // Our model's welcome: a method or rule it cannot run fell back to its family's default (docs/protocol.md).
    const fallback = !first && message.model.name === state.config.model
      ? { method: serves(message.methods, state.config.method) ? state.config.method : message.state.method,
          rule: serves(message.rules, state.config.rule) ? state.config.rule : message.state.rule }
      : {};
    return {
      ...state,
      welcome: ours ? message : state.welcome,
      notice: null, // a fresh connection: earlier refusals no longer apply
      config: first ? { ...defaults, ...(requested?.config ?? {}) } : { ...state.config, ...fallback },
      selection: first
        ? requested?.selection ?? { output: message.state.output, hidden: message.state.hidden, alone: false, implicit: false,
            versus: message.state.versus ?? null }
        : state.selection,
      defaults: state.defaults ?? defaults,
      requested: first ? null : state.requested,
    };
  },

  // A drawing (and maybe settings) from an example, a share link, a file or the timeline: it
  // replaces the drawing; main.js sends it (clear, configure, strokes, select).
  // photo: {data, input, preview} in place of strokes (a shared or saved photo), else null
  load(state, { strokes, photo = null, config = null, selection = null, keepTimeline = false }) {
    const { lastId, version } = state.drawing;
    const loaded = strokes.map((points, k) => ({ id: lastId + 1 + k, points }));
    const drawing = { strokes: loaded, lastId: lastId + loaded.length, version: version + 1, photo };
    const timeline = keepTimeline ? state.timeline : null;
    if (state.config === null) return { ...state, drawing, timeline, requested: { config, selection } };
    const modelChanged = config !== null && config.model !== state.config.model;
    return {
      ...state,
      notice: null,
      drawing,
      timeline,
      config: config ? { ...state.config, ...config } : state.config,
      selection: selection ?? (modelChanged ? { output: null, hidden: null, alone: false, implicit: false, versus: null } : state.selection),
      card: modelChanged ? null : state.card,
      comparison: null,
      comparing: null,
    };
  },

  // inputBytes: the frame's input as u8 (photo.js), kept as the photo's own once a frame answers it
  frame(state, { frame, stats, inputBytes = null }) {
    const pending = state.photoPending;
    const answered = pending !== null && pending.seq !== null && (frame.seq ?? -1) >= pending.seq && state.drawing.photo;
    return {
      ...state,
      ...(answered ? { photoPending: null, drawing: { ...state.drawing, photo: { ...state.drawing.photo, input: inputBytes } } } : {}),
      frame,
      heatmapFrame: frame.heatmap ? frame : state.heatmapFrame,
      stats: { ...state.stats, ...stats },
    };
  },

  // version: the drawing version the comparison answered (the page's record for its seq), if known
  comparison: (state, { comparison, version }) => ({
    ...state,
    comparison: { ...comparison, drawingVersion: version ?? state.drawing.version },
    comparing: null,
  }),

  compareRequested: (state, { seq }) => ({ ...state, comparing: seq }),

  // A refused compare is never answered: stop waiting for it. A refused photo gives the pad its drawing
  // back (the server kept it). Other refusals only set the notice.
  refused(state, { seq, notice }) {
    // (Restored only while the pad still shows that photo: ink drawn since is the visitor's drawing now.)
    const photo = state.photoPending?.seq === seq && state.drawing.photo ? state.photoPending : null;
    return {
      ...state, notice, comparing: seq === state.comparing ? null : state.comparing,
      // a refused message gets no frame: nothing is pending for it (status.js, data-frame-seq)
      stats: seq === null ? state.stats : { ...state.stats, refusedSeq: Math.max(seq, state.stats.refusedSeq ?? 0) },
      ...(photo ? { photoPending: null, drawing: { ...photo.before, version: state.drawing.version + 1 } } : {}),
    };
  },

  // A photo or picture replaces the drawing at once; `photoSent` then records its seq.
  photo(state, { data, preview }) {
    const { lastId, version } = state.drawing;
    return {
      ...state, notice: null, timeline: null, comparison: null, comparing: null,
      photoPending: { seq: null, before: state.drawing },
      drawing: { strokes: [], lastId, version: version + 1, photo: { data, input: null, preview } },
    };
  },

  photoSent: (state, { seq }) => (state.photoPending ? { ...state, photoPending: { ...state.photoPending, seq } } : state),

  notice: (state, { notice }) => ({ ...state, notice }),

  sent: (state, { seq }) => ({ ...state, stats: { ...state.stats, sentSeq: seq } }),

  stats: (state, { stats }) => ({ ...state, stats: { ...state.stats, ...stats } }),

  // keepTimeline: a stroke the timeline replays; a visitor's own stroke closes the timeline
  strokeStart(state, { keepTimeline = false }) {
    const { strokes, lastId, version } = state.drawing;
    const stroke = { id: lastId + 1, points: [] };
    return {
      ...state, notice: null, timeline: keepTimeline ? state.timeline : null,
      // a stroke after a photo starts a new drawing on a blank pad (docs/protocol.md, "photo")
      drawing: { strokes: [...strokes, stroke], lastId: stroke.id, version: version + 1, photo: null },
    };
  },

  timelineOpen(state) {
    const recording = state.drawing.strokes.map((stroke) => stroke.points).filter((points) => points.length);
    const position = recording.reduce((sum, points) => sum + points.length, 0);
    return { ...state, timeline: { recording, position } };
  },

  timelineAt: (state, { position }) => ({ ...state, timeline: { ...state.timeline, position } }),

  timelineClose: (state) => ({ ...state, timeline: null }),

  points(state, { points }) {
    const { strokes, lastId, version } = state.drawing;
    const last = strokes[strokes.length - 1];
    if (!last) return state; // the stroke was undone or cleared while the pen was down
    const grown = { ...last, points: last.points.concat(points) };
    return { ...state, drawing: { strokes: [...strokes.slice(0, -1), grown], lastId, version: version + 1, photo: null } };
  },

  // A photo is one step: undone, the pad is blank.
  undo(state) {
    const { strokes, lastId, version, photo } = state.drawing;
    const kept = photo ? strokes : strokes.slice(0, -1);
    return { ...state, notice: null, timeline: null, photoPending: null, drawing: { strokes: kept, lastId, version: version + 1, photo: null } };
  },

  clear(state) {
    // Stroke ids keep increasing after a clear (docs/protocol.md, "clear, undo").
    return { ...state, notice: null, timeline: null, photoPending: null,
             drawing: { strokes: [], lastId: state.drawing.lastId, version: state.drawing.version + 1, photo: null } };
  },

  select: (state, { selection }) => ({ ...state, selection }),

  configure(state, { change }) {
    // A model change resets the selection and the knock-out: hidden indices differ between models.
    const modelChanged = change.model !== undefined && change.model !== state.config.model;
    const config = { ...state.config, ...(modelChanged ? { knockout: [] } : {}), ...change };
    return {
      ...state,
      config,
      selection: modelChanged ? { output: null, hidden: null, alone: false, implicit: false } : state.selection,
      card: modelChanged ? null : state.card,
      comparison: modelChanged ? null : state.comparison,
      // the server drops a comparison whose model changed while it computed (docs/protocol.md)
      comparing: modelChanged ? null : state.comparing,
    };
  },

  card: (state, { card }) => ({ ...state, card }),

  overlay: (state, { on }) => ({ ...state, view: { ...state.view, overlay: on } }),
  ownScale: (state, { on }) => ({ ...state, view: { ...state.view, ownScale: on } }),
  compareShared: (state, { on }) => ({ ...state, view: { ...state.view, compareShared: on } }),

  templates: (state, { on }) => ({ ...state, view: { ...state.view, templates: on } }),
};

/**
 * The next state.
 * @param {object} state
 * @param {{type: string}} action  one of the keys of `reducers`, with its fields
 */
export function reduce(state, action) {
  const reducer = reducers[action.type];
  if (!reducer) throw new Error(`Expected one of ${Object.keys(reducers).join(", ")}, got action ${action.type}`);
  return reducer(state, action);
}

/**
 * A store: the current state, `dispatch(action)` and `subscribe(listener)`.
 * Listeners get `(state, previous)` after every dispatch.
 */
export function createStore(state = initialState()) {
  let current = state;
  const listeners = new Set();
  return {
    get: () => current,
    dispatch(action) {
      const previous = current;
      current = reduce(current, action);
      for (const listener of listeners) listener(current, previous);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
