// Wiring only: input → actions and messages; state → views, once per
// animation frame. The logic lives in the modules imported here.

import { decode, decodeComparison, decodeFrame } from "./arrays.js";
import { createPad } from "./canvas.js";
import { buildCard, updateCard } from "./card.js";
import { buildBars, updateBars } from "./chart.js";
import { renderComparison } from "./compare.js";
import { fillControls, listenControls, showConfig } from "./controls.js";
import { paintInk, paintRelevance } from "./heatmap.js";
import { createScaleLegend, mapScale } from "./legend.js";
import { replayMessages, selectMessage, strokeMessages } from "./messages.js";
import { buildNetwork, layoutNetwork, listenNetwork, markSelection, showTemplates, updateNetwork } from "./network.js";
import { createAnnouncer } from "./announce.js";
import { buildExamples, loadExamples } from "./examples.js";
import { download, exportDocument, panelPng, readExport } from "./exporter.js";
import { kioskSettings, watchVisitors } from "./kiosk.js";
import { ARRIVAL_EXAMPLES, ARRIVAL_PAUSE_MS, playsOnArrival, watchFirstTouch } from "./arrival.js";
import { addPanel } from "./panels.js";
import { play, prefix } from "./playback.js";
import { readShareLink, shareLink } from "./share.js";
import { createTimeline } from "./timeline.js";
import { inputBytes, paintPhoto, scalePhoto } from "./photo.js";
import { answeredByFrame, createSocket } from "./socket.js";
import { createStore, hiddenSelection, isEmpty, modelSizes, pointCount } from "./state.js";
import { describeStatus, renderStatus } from "./status.js";
import { heatmapTerm, heatmapTitle, legendWords, summarize } from "./summary.js";
import { createPaintTimer } from "./timing.js";
import { createQuestions } from "./questions.js";
import { conditionsOnHidden, createSelectionPanel } from "./selection.js";
import { createTrust } from "./trust.js";
import { channelSelection, listenConvnet, outputSelection, renderConvnet, showFamily } from "./convnet.js";
import { buildConceptCard, cardUrl, updateConceptCard } from "./concept-card.js";
import { createTeaching } from "./teach.js";

const $ = (id) => document.getElementById(id);
const store = createStore();
const timer = createPaintTimer();

// ---------- views built once ----------
const selects = { model: $("model"), method: $("method"), rule: $("rule") };
let bars = []; // one column per class, built from the welcome (renderSizes)
const legend = createScaleLegend($("legend"), $("scale-slot"), (on) => store.dispatch({ type: "ownScale", on }));
const card = buildCard($("card"));
const networkBox = $("network");
const sheet = $("network-sheet"); // the full grid, one tap away when the stage shows a strip
const networkFull = $("network-full");
// The built diagrams (stage, sheet); each rebuilt when the model or its layout changes.
const diagrams = { stage: { box: networkBox, view: null, key: "" }, sheet: { box: networkFull, view: null, key: "" } };

// ---------- the connection ----------
// The drawing version each sent message left the page at. A comparison answers the drawing as of its
// `seq` (docs/protocol.md), which may be older than the drawing when it arrives.
const versionAtSeq = new Map();
const VERSIONS_KEPT = 4096;


function sent(seq, message) {
  versionAtSeq.set(seq, store.get().drawing.version);
  if (versionAtSeq.size > VERSIONS_KEPT) versionAtSeq.delete(versionAtSeq.keys().next().value);
  // The status line's sent seq (what frames must catch up with) skips requests no frame answers.
  if (answeredByFrame(message.type)) store.dispatch({ type: "sent", seq });
}

const socket = createSocket({
  url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`,
  onMessage: receive,
  onConnection(connection) {
    if (connection.status !== "open") timer.forget();
    store.dispatch({ type: "connection", connection });
  },
  replay: (welcome) => replayMessages(store.get(), welcome),
  onSent: sent,
});

function receive(message) {
  switch (message.type) {
    case "welcome":
      store.dispatch({ type: "welcome", message });
      break;
    case "frame": {
      const frame = decodeFrame(message);
      // The frame answering a photo carries its 28 × 28 input: the photo's own from then on (share, replay).
      const bytes = store.get().photoPending ? inputBytes(frame.input) : null;
      store.dispatch({ type: "frame", frame, stats: socket.stats(), inputBytes: bytes });
      followPrediction(store.get());
      break;
    }
    case "sanity":
      trust.receive(message);
      break;
    case "comparison":
      store.dispatch({ type: "comparison", comparison: decodeComparison(message), version: versionAtSeq.get(message.seq) });
      break;
    case "counterfactual":
      questions.receive(message);
      break;
    case "taught":
    case "forgotten":
      teaching.receive(message);
      break;
    case "error":
      // One line, the code only: the refused message may hold a visitor's drawing.
      console.warn("xai: server refused a message", message.code, "seq", message.seq);
      if (questions.refused(message.seq, message.code) || teaching.refused(message.seq, message.code)) break;
      if (message.seq !== null && message.seq === store.get().photoPending?.seq) {
        // The server's sentence says why and states the limit (docs/protocol.md, "photo"); it holds no content.
        store.dispatch({ type: "refused", seq: message.seq, notice: { code: message.code, text: `This photo could not be read: ${message.message}.` } });
        redrawPad();
        break;
      }
      store.dispatch({ type: "refused", seq: message.seq,
                       notice: { code: message.code, text: `The server refused a message (${message.code}).` } });
      break;
    default:
      console.warn("xai: unexpected message type", message.type);
  }
}

// The frame rate counts frames of the last second and the display lag grows while no frame comes: both
// must change on screen although no frame arrives to update them.
setInterval(() => {
  const { connection, stats } = store.get();
  const now = socket.stats();
  if (describeStatus(connection, stats).text !== describeStatus(connection, now).text) store.dispatch({ type: "stats", stats: now });
}, 250);

function notice(text) {
  store.dispatch({ type: "notice", notice: { code: "limit", text } });
}

// ---------- drawing ----------
/** A new stroke, unless the drawing is full. keepTimeline: the timeline replays it (else it closes). */
function startStroke(keepTimeline = false) {
  socket.wake(); // an idle or refused connection reconnects on the next touch
  const state = store.get();
  // No limits before the first welcome: the ink is kept, and that welcome's replay sends it.
  const limits = state.welcome?.limits;
  if (limits && (state.drawing.strokes.length >= limits.max_strokes || pointCount(state.drawing) >= limits.max_points)) {
    notice("The drawing is full: Undo or Clear to draw more.");
    return false;
  }
  store.dispatch({ type: "strokeStart", keepTimeline });
  return true;
}

/** Points appended to the current stroke, sent at once; eventTimeMs: the earliest input event's. */
function addPoints(points, eventTimeMs) {
  const state = store.get();
  const limits = state.welcome?.limits; // none before the first welcome: its replay sends these points
  const accepted = limits ? points.slice(0, Math.max(0, limits.max_points - pointCount(state.drawing))) : points;
  if (accepted.length < points.length) notice("The drawing is full: Undo or Clear to draw more.");
  if (!accepted.length) return;
  store.dispatch({ type: "points", points: accepted });
  if (!limits) return;
  const id = store.get().drawing.lastId;
  for (const message of strokeMessages(id, accepted, limits.max_points_per_message)) {
    const seq = socket.send(message);
    if (seq !== null) timer.input(seq, eventTimeMs);
  }
}

/** Draw the pad again: the photo, if any, under the strokes. */
function redrawPad() {
  const { drawing } = store.get();
  pad.redraw(drawing.strokes, drawing.photo ? (context) => paintPhoto(context, drawing.photo, redrawPad) : null);
}

const pad = createPad($("pad"), {
  onStrokeStart() {
    stopPlayback(); // a visitor's pen takes over from an example being drawn
    const photo = store.get().drawing.photo;
    const started = startStroke();
    if (started && photo) redrawPad(); // the pen starts a new drawing on a blank pad
    return started;
  },
  onPoints: addPoints,
  onStrokeEnd: refreshComparison,
});

// ---------- loading a drawing: examples, share links, files, the timeline ----------
let playback = null; // an example being drawn point by point (playback.js)

function stopPlayback() {
  playback?.cancel();
  playback = null;
}

/** Send the loaded drawing: clear, the settings that changed since `before`, strokes, selection. */
function sendLoaded(before) {
  const state = store.get();
  if (!state.welcome || !before) return; // not connected yet: the first welcome's replay sends it
  socket.send({ type: "clear" });
  // Knock-outs the loaded settings drop (replayMessages sends only those it keeps).
  if (before.knockout?.length && !state.config.knockout?.length) socket.send({ type: "configure", knockout: [] });
  for (const message of replayMessages(state, { state: before, limits: state.welcome.limits })) socket.send(message);
  if (state.selection.output === null && state.selection.hidden === null) socket.send(selectMessage(state.selection));
}

/**
 * Show a drawing with its settings. animate: drawn point by point as a hand would, the network
 * answering live (examples, the kiosk's attract loop); onDone then follows its last stroke.
 */
function load({ strokes, photo = null, config = null, selection = null }, { animate = false, keepTimeline = false, onDone } = {}) {
  stopPlayback();
  pad.endStroke();
  socket.wake();
  const before = store.get().config;
  store.dispatch({ type: "load", strokes: animate ? [] : strokes, photo, config, selection, keepTimeline });
  sendLoaded(before);
  redrawPad();
  if (!animate) {
    refreshComparison();
    return;
  }
  playback = play(strokes, {
    onStrokeStart: () => startStroke(keepTimeline),
    onPoints(points) {
      addPoints(points, performance.now());
      redrawPad();
    },
    onStrokeEnd: refreshComparison,
    onDone() {
      playback = null;
      onDone?.();
    },
  });
}

function undo() {
  const { strokes, photo } = store.get().drawing;
  if (!strokes.length && !photo) return;
  stopPlayback();
  pad.endStroke(); // undoing the stroke being drawn ends it
  socket.wake();
  store.dispatch({ type: "undo" });
  // A stroke without points was never sent: the server's last stroke is the one before it.
  if (photo || strokes[strokes.length - 1].points.length) socket.send({ type: "undo" });
  redrawPad();
  refreshComparison();
}

function clear() {
  stopPlayback();
  pad.endStroke();
  socket.wake();
  store.dispatch({ type: "clear" });
  socket.send({ type: "clear" });
  redrawPad();
  refreshComparison();
}

// ---------- bring your own digit: a photo or a picture file (photo.js) ----------
/** Scale `file` down, show it on the pad and send it; a picture that cannot be sent says why. */
async function sendPhoto(file) {
  const state = store.get();
  const limits = state.welcome?.limits;
  if (!limits) {
    notice("Not connected yet: try the photo again in a moment.");
    return;
  }
  let scaled;
  try {
    scaled = await scalePhoto(file, { maxMessageBytes: limits.max_message_bytes, maxSidePx: limits.max_photo_side_px });
  } catch (error) {
    notice(error.message);
    return;
  }
  stopPlayback();
  pad.endStroke();
  socket.wake();
  store.dispatch({ type: "photo", ...scaled });
  redrawPad();
  const seq = socket.send({ type: "photo", data: scaled.data });
  if (seq !== null) store.dispatch({ type: "photoSent", seq });
  refreshComparison();
}

$("upload").addEventListener("change", (event) => {
  const [file] = event.target.files;
  event.target.value = ""; // the same file chosen again is a new photo
  if (file) sendPhoto(file);
});
// A laptop: a picture file dropped on the pad.
const padBox = $("pad").parentElement;
padBox.addEventListener("dragover", (event) => {
  if (![...event.dataTransfer.types].includes("Files")) return;
  event.preventDefault();
  padBox.classList.add("dropping");
});
padBox.addEventListener("dragleave", () => padBox.classList.remove("dropping"));
padBox.addEventListener("drop", (event) => {
  padBox.classList.remove("dropping");
  const [file] = event.dataTransfer.files;
  if (!file) return;
  event.preventDefault();
  sendPhoto(file);
});

$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clear);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "z") {
    event.preventDefault();
    undo();
  }
});

// ---------- selection ----------
function select(selection) {
  socket.wake(); // after an idle close, any action reconnects; the replay carries it
  store.dispatch({ type: "select", selection });
  socket.send(selectMessage(selection));
}

function pick({ kind, index }) {
  const state = store.get();
  if (kind === "output") {
    // Order-free (issue 11): a class tapped keeps the hidden neuron, which then explains that class.
    select({ output: index, hidden: state.selection.hidden, alone: false, implicit: false });
    return;
  }
  select(hiddenSelection(state, index, state.selection.alone));
}

/** A hidden neuron tapped under the prediction keeps explaining the prediction as it changes. */
function followPrediction({ selection, frame, drawing }) {
  if (!selection.implicit || selection.alone || selection.hidden === null || isEmpty(drawing)) return;
  if (frame.prediction !== selection.output) select({ ...selection, output: frame.prediction });
}

function alone(hidden, on) {
  const state = store.get();
  const next = on ?? !(state.selection.alone && state.selection.hidden === hidden);
  select(hiddenSelection(state, hidden, next));
}

function reset() {
  select({ output: null, hidden: null, alone: false, implicit: false });
}

listenNetwork(networkBox, () => diagrams.stage.view, { onPick: pick, onAlone: alone, onReset: reset });
// A neuron picked in the sheet closes it: the stage's strip then shows it beside the heatmap.
listenNetwork(networkFull, () => diagrams.sheet.view, {
  onPick(picked) {
    pick(picked);
    sheet.close();
  },
  onAlone(hidden, on) {
    alone(hidden, on);
    sheet.close();
  },
  onReset: reset,
});
$("network-all").addEventListener("click", () => {
  sheet.showModal();
  diagrams.sheet.key = ""; // built at the sheet's width, now that it has one
  relayout();
});
$("network-sheet-close").addEventListener("click", () => sheet.close());
// A cnn's diagram (convnet.js) and channel card (concept-card.js): a tap selects a channel or a class.
const onChannel = (layer, channel) => select(channelSelection(store.get().selection, layer, channel));
listenConvnet(networkBox, { onChannel, onOutput: (c) => select(outputSelection(store.get().selection, c)), onReset: reset });
const conceptCard = buildConceptCard($("concept"), { onChannel });
$("alone").addEventListener("change", (event) => alone(store.get().selection.hidden, event.target.checked));
$("reset").addEventListener("click", reset);
$("overlay").addEventListener("change", (event) => store.dispatch({ type: "overlay", on: event.target.checked }));
$("templates").addEventListener("change", (event) => store.dispatch({ type: "templates", on: event.target.checked }));

// ---------- weight templates W1[j] in the diagram ----------
const templates = new Map(); // model → image URL per hidden neuron, or "loading" / "failed"

/** One image URL per hidden neuron: W1[j] on the diagram's RdBu map, each at its own max|w|. */
async function loadTemplates(model) {
  templates.set(model, "loading");
  try {
    const response = await fetch(`/api/models/${encodeURIComponent(model)}/weights`);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const weights = decode((await response.json()).weights);
    const [count, rows, cols] = weights.shape;
    const canvas = document.createElement("canvas");
    templates.set(model, Array.from({ length: count }, (_, j) => {
      paintRelevance(canvas, { values: weights.values.subarray(j * rows * cols, (j + 1) * rows * cols), shape: [rows, cols] });
      return canvas.toDataURL("image/png");
    }));
  } catch (error) {
    console.warn("xai: weight templates unavailable", model, error.message);
    templates.set(model, "failed");
  }
  renderRequest ??= requestAnimationFrame(render);
}

/** The template URLs the diagrams show now: null while off, loading or failed. */
function shownTemplates(state) {
  const model = state.welcome?.model.name;
  if (!state.view.templates || !model) return null;
  if (!templates.has(model)) loadTemplates(model);
  const urls = templates.get(model);
  return Array.isArray(urls) ? urls : null;
}

// ---------- settings and comparison ----------
function configure(change) {
  socket.wake();
  store.dispatch({ type: "configure", change });
  socket.send({ type: "configure", ...change });
}
listenControls(selects, configure);

// ---------- the three questions: contrast, counterfactual, knock-out (questions.js) ----------
const questions = createQuestions({
  getState: store.get, select, configure, send: (message) => (socket.wake(), socket.send(message)),
  diagrams: [networkBox, networkFull], card: $("card"),
});

// ---------- selection pair, scales and "Can I trust this map?" (selection.js, legend.js, trust.js) ----------
// In the details under the heatmap (beside its toggles): the stage itself has no room left on a phone.
const selectionPanel = createSelectionPanel($("selection-slot"), {
  clearHidden: () => select({ ...store.get().selection, hidden: null, alone: false }),
  // Without a class, a hidden neuron explains the prediction again (it follows it).
  clearOutput() {
    const { selection, frame } = store.get();
    const follows = selection.hidden !== null && frame !== null;
    select({ ...selection, output: follows ? frame.prediction : null, implicit: follows, versus: null });
  },
});
const trust = createTrust({ send: (message) => (socket.wake(), socket.send(message)) });
// "Teach the network" (teach.js): a panel below the stage, its dialog and the list of taught drawings.
const teaching = createTeaching({ send: (message) => socket.send(message), kiosk: kioskSettings(location.search) !== null });

/** The methods a comparison asks for: every method the server offers, at most welcome.limits.max_compare_methods. */
function requestComparison() {
  socket.wake(); // reconnects after an idle close; this request is lost then, the next one is answered
  const welcome = store.get().welcome;
  const methods = welcome?.methods.map((method) => method.name).slice(0, welcome.limits.max_compare_methods) ?? [];
  const seq = methods.length ? socket.send({ type: "compare", methods }) : null;
  if (seq !== null) store.dispatch({ type: "compareRequested", seq });
}

/** Once a visitor asked for a comparison, keep it in step with the drawing at each pen lift. */
function refreshComparison() {
  if (store.get().comparison && !isEmpty(store.get().drawing)) requestComparison();
  questions.refresh();
}

$("compare").addEventListener("click", requestComparison);
$("compare-shared").addEventListener("change", (event) => store.dispatch({ type: "compareShared", on: event.target.checked }));

// ---------- neuron card data ----------
const cards = new Map(); // "model/j" → card JSON, computed once per model by the server

async function loadCard(model, hidden, layer, url) {
  const key = `${model}/${layer}/${hidden}`;
  if (cards.has(key)) {
    store.dispatch({ type: "card", card: { model, hidden, layer, status: "ready", data: cards.get(key) } });
    return;
  }
  store.dispatch({ type: "card", card: { model, hidden, layer, status: "loading" } });
  try {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    cards.set(key, await response.json());
    store.dispatch({ type: "card", card: { model, hidden, layer, status: "ready", data: cards.get(key) } });
  } catch (error) {
    console.warn("xai: neuron card failed", key, error.message);
    store.dispatch({ type: "card", card: { model, hidden, layer, status: "error", error: error.message } });
  }
}

function syncCard(state) {
  const { hidden, layer = null } = state.selection;
  const model = state.config?.model;
  // The welcome must describe the model (a cnn's card comes from its concepts route).
  if (hidden === null || !model || state.welcome?.model.name !== model) return;
  if (state.card?.model === model && state.card.hidden === hidden && (state.card.layer ?? null) === layer) return;
  loadCard(model, hidden, layer, cardUrl(state.welcome, layer, hidden));
}

// ---------- timeline ----------
const timeline = createTimeline({
  box: $("timeline"), range: $("timeline-range"), play: $("timeline-play"), close: $("timeline-close"),
  open: $("replay"), label: $("timeline-label"),
}, {
  onOpen() {
    stopPlayback();
    pad.endStroke();
    store.dispatch({ type: "timelineOpen" });
  },
  onPosition: showTimeline,
  onClose: () => store.dispatch({ type: "timelineClose" }),
});

/** Show the first `position` points of the recording: forward as live drawing, backward as a reload. */
function showTimeline(position) {
  const { timeline: open } = store.get();
  if (!open || position === open.position) return;
  const shown = prefix(open.recording, open.position);
  const next = prefix(open.recording, position);
  store.dispatch({ type: "timelineAt", position });
  if (position < open.position) {
    load({ strokes: next }, { keepTimeline: true });
    return;
  }
  next.forEach((points, k) => {
    const had = shown[k]?.length ?? 0;
    if (had === points.length || (had === 0 && !startStroke(true))) return;
    addPoints(points.slice(had), performance.now());
  });
  redrawPad();
}

// ---------- examples and the kiosk's attract loop ----------
const NO_SELECTION = { output: null, hidden: null, alone: false, implicit: false, versus: null };
const examplesPanel = addPanel({ id: "examples", title: "Examples", order: 5 });
const examplesIntro = document.createElement("p");
examplesIntro.className = "hint";
examplesIntro.textContent = "Digits from the training data, drawn for you stroke by stroke. Those marked ? are ones the network finds hard or gets wrong.";
examplesPanel.body.append(examplesIntro, document.createElement("div"));
let examples = [];
loadExamples()
  .then((list) => {
    examples = list;
    renderRequest ??= requestAnimationFrame(render); // the blank pad's "Show me an example"
    buildExamples(examplesPanel.body.lastElementChild, list, (example) => load({ strokes: example.strokes }, { animate: true }));
    if (arrival.left > 0) drawArrivalExample();
  })
  .catch((error) => console.warn("xai: examples unavailable", error.message));

// The examples, from the stage: a blank pad offers to draw the next one.
let shownExample = 0;
/** The next example in turn, drawn live; onDone as load's. */
function drawExample(onDone) {
  const example = examples[shownExample % examples.length];
  shownExample += 1;
  load({ strokes: example.strokes }, { animate: true, onDone });
}
$("example-now").addEventListener("click", () => {
  if (examples.length) drawExample();
});

// ---------- the first minute: examples draw themselves until the first touch (arrival.js) ----------
// left: examples still to draw (0 once the visitor touched the page, or when arrival does not play).
const arrival = { left: 0, timer: null };

function drawArrivalExample() {
  arrival.timer = null;
  if (arrival.left <= 0 || !examples.length) return;
  arrival.left -= 1;
  drawExample(() => {
    if (arrival.left > 0) arrival.timer = setTimeout(drawArrivalExample, ARRIVAL_PAUSE_MS);
  });
}

/** The first touch ends arrival; a touch on the pad also clears it, so the visitor draws on a blank pad. */
function endArrival(event) {
  const onPad = event.type === "pointerdown" && $("pad").contains(event.target);
  const drawn = arrival.left < ARRIVAL_EXAMPLES; // an example is on the pad, or being drawn
  clearTimeout(arrival.timer);
  arrival.timer = null;
  arrival.left = 0;
  $("arrival-hint").hidden = true;
  // Elsewhere (a neuron, a control) the example being drawn finishes: it is what the visitor explores.
  if (onPad && drawn) load({ strokes: [] });
}

const kiosk = kioskSettings(location.search);
let attractTimer = null;
let attractNext = 0;

/** The start state (empty pad, the server's default model, method, rule, no selection), then the loop. */
function attract() {
  if (sheet.open) sheet.close();
  window.scrollTo({ top: 0, left: 0, behavior: "instant" }); // the attract loop plays on the stage, in view
  teaching.reset();
  store.dispatch({ type: "overlay", on: false });
  load({ strokes: [], config: store.get().defaults, selection: NO_SELECTION });
  $("cta").hidden = false;
  drawNextExample();
}

function drawNextExample() {
  attractTimer = null;
  if (!examples.length) return;
  const example = examples[attractNext % examples.length];
  attractNext += 1;
  load({ strokes: example.strokes }, { animate: true, onDone: () => (attractTimer = setTimeout(drawNextExample, 2500)) });
}

function endAttract() {
  clearTimeout(attractTimer);
  attractTimer = null;
  $("cta").hidden = true;
  load({ strokes: [] });
}

if (kiosk) {
  document.body.classList.add("kiosk");
  document.addEventListener("contextmenu", (event) => event.preventDefault()); // a long press is not a menu
  watchVisitors(kiosk, { onIdle: attract, onVisitor: endAttract });
  // Unattended: a connection the server refused or closed for idleness is opened again without a touch.
  setInterval(() => {
    if (["closed", "idle"].includes(store.get().connection.status)) socket.wake();
  }, 5000);
}

// ---------- keep and share: link, picture, data ----------
const keep = addPanel({ id: "keep", title: "Keep and share", order: 6 });
keep.body.innerHTML = `
  <p class="hint">A link holds the drawing and what is selected; opening it on another device shows the same reading.</p>
  <div class="keep-row"><button id="share" type="button">Make a share link</button>
    <button id="export-png" type="button">Download picture (PNG)</button>
    <button id="export-json" type="button">Download data (JSON)</button></div>
  <label class="share-field">Share link <input id="share-link" type="text" readonly></label>
  <p id="share-note" class="hint"></p>
  <label class="file-field">Open a saved data file <input id="import-json" type="file" accept="application/json,.json"></label>`;

function settings() {
  const { config, selection } = store.get();
  return { config, selection };
}

$("share").addEventListener("click", async () => {
  const state = store.get();
  if (!state.config) return;
  const strokes = state.drawing.strokes.map((stroke) => stroke.points).filter((points) => points.length);
  const link = shareLink(location.origin + location.pathname, strokes, settings(), state.drawing.photo?.input ?? null);
  if (!link) {
    $("share-note").textContent = "This drawing is too large for a link even simplified: download the data file instead.";
    return;
  }
  $("share-link").value = link.url;
  $("share-link").select();
  const simplified = link.kept < link.points
    ? `Simplified to fit a link: ${link.kept} of ${link.points} points kept; the reading may differ slightly. `
    : "";
  try {
    await navigator.clipboard.writeText(link.url);
    $("share-note").textContent = `${simplified}Copied.`;
  } catch (error) {
    $("share-note").textContent = `${simplified}Select the link and copy it.`;
  }
});

function exportName(extension) {
  const frame = store.get().frame;
  return `digit-${frame && !isEmpty(store.get().drawing) ? frame.prediction : "blank"}.${extension}`;
}

$("export-png").addEventListener("click", async () => {
  const state = store.get();
  const text = {
    // The plain title and, in brackets, the method's term (on screen one tap away).
    title: $("term").hidden ? $("heatmap-words").textContent : `${$("heatmap-words").textContent} (${$("term").textContent})`,
    verdict: `It reads ${$("predicted").textContent} · ${$("confidence").textContent}`,
    summary: $("summary").textContent,
    legend: legend.shown(), // exactly the scale the heatmap was painted at, as on screen
    side: state.welcome ? modelSizes(state.welcome).side : null,
  };
  download(await panelPng({ pad: $("pad"), input: $("input"), heatmap: $("heatmap") }, text), exportName("png"));
});

let modelList = null; // GET /api/models, for the weights' version (sha256) in the JSON export
$("export-json").addEventListener("click", async () => {
  try {
    const response = await fetch("/api/models");
    if (response.ok) modelList = await response.json();
  } catch (error) {
    console.warn("xai: model list unavailable for the export", error.message);
  }
  const body = JSON.stringify(exportDocument(store.get(), modelList), null, 1);
  download(new Blob([body], { type: "application/json" }), exportName("json"));
});

$("import-json").addEventListener("change", async (event) => {
  const [file] = event.target.files;
  if (!file) return;
  try {
    load(readExport(await file.text()));
    $("share-note").textContent = `Opened ${file.name}.`;
  } catch (error) {
    $("share-note").textContent = `Could not open ${file.name}: ${error.message}`;
  }
  event.target.value = "";
});

// A share link opened: its drawing and settings, sent at the first welcome (state.requested).
let opened = false; // a share link's drawing (or the notice that it is damaged) is what the page shows
try {
  const shared = readShareLink(location.hash);
  if (shared) load(shared);
  opened = Boolean(shared);
} catch (error) {
  notice(`This share link is damaged: ${error.message}`);
  opened = true;
}

const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
if (playsOnArrival({ kiosk: kiosk !== null, opened, reducedMotion })) {
  arrival.left = ARRIVAL_EXAMPLES;
  $("arrival-hint").hidden = false;
  watchFirstTouch(endArrival);
  if (examples.length) drawArrivalExample(); // else when they have loaded
}

const announcer = createAnnouncer($("announce"));

// ---------- rendering, once per animation frame ----------
let rendered = null; // the state the views show
let renderRequest = null;

store.subscribe((state) => {
  syncCard(state);
  renderRequest ??= requestAnimationFrame(render);
});

function render() {
  renderRequest = null;
  const state = store.get();
  const before = rendered ?? {};
  rendered = state;

  renderStatus({ line: $("status"), notice: $("notice") }, state.connection, state.stats, state.notice, state.frame);
  if (state.welcome && state.welcome !== before.welcome) {
    fillControls(selects, state.welcome, state.config);
    renderSizes(modelSizes(state.welcome));
    showFamily(state.welcome.model.family === "cnn");
  } else if (state.welcome && state.config !== before.config) showConfig(selects, state.welcome, state.config);

  const empty = isEmpty(state.drawing);
  renderOutage(state);
  if (state.welcome) {
    renderNetwork(diagrams.stage, state, before, { fit: true });
    if (sheet.open) renderNetwork(diagrams.sheet, state, before, { fit: false });
  }
  if (state.frame && (state.frame !== before.frame || state.drawing !== before.drawing)) renderReading(state.frame, empty);
  if (state.frame && (state.frame !== before.frame || state.view !== before.view || state.drawing !== before.drawing)) {
    renderExplanation(state, empty);
  }
  if (state.frame !== before.frame || state.selection !== before.selection || state.card !== before.card) {
    if (state.welcome?.model.family === "cnn") updateConceptCard(conceptCard, state.card, state.selection, state.frame, empty);
    else updateCard(card, state.card, state.selection.hidden, state.frame);
  }
  renderSelectionControls(state);
  questions.render(state);
  selectionPanel.render(state);
  trust.render(state);
  teaching.render(state);
  // A photo has no strokes to replay: the timeline is for drawings.
  if (state.timeline !== before.timeline || state.drawing !== before.drawing) timeline.render(state.timeline, !empty && !state.drawing.photo);
  $("pad-hint").hidden = !empty || !$("cta").hidden;
  // A blank pad has nothing to replay: Example takes Replay's place (no layout change while drawing).
  $("example-now").hidden = !empty || !$("cta").hidden || !examples.length;
  $("replay").hidden = !$("example-now").hidden;
  if (state.frame !== before.frame || state.drawing !== before.drawing || state.connection !== before.connection) announce(state, empty);
  if (state.comparison && (state.comparison !== before.comparison || state.view.compareShared !== before.view?.compareShared)) {
    renderComparison($("compare-grid"), state.comparison, { shared: state.view.compareShared, welcome: state.welcome });
  }
  $("compare-grid").classList.toggle("stale", Boolean(state.comparison) && state.comparison.drawingVersion !== state.drawing.version);
  $("compare-note").textContent = compareNote(state);
  if (state.frame && state.frame !== before.frame) socket.painted(state.frame); // flow control: the next frame may come
}

/** What a screen reader hears once the reading settles (announce.js): the reading, else the connection. */
function announce(state, empty) {
  const live = state.connection.status === "open";
  if (!live && state.welcome) announcer.say(describeStatus(state.connection, state.stats).text.split(" · ")[0]);
  else if (state.frame) {
    const percent = Math.round(state.frame.probabilities[state.frame.prediction] * 100);
    announcer.say(empty ? "Nothing drawn yet." : `It reads ${state.frame.prediction}, ${percent} percent sure. ${$("summary").textContent}`);
  }
}

function compareNote({ comparing, comparison, drawing }) {
  if (comparing !== null) return "Computing every method…";
  if (!comparison) return "";
  const stale = comparison.drawingVersion !== drawing.version ? " The drawing has changed since: compare again." : "";
  return `Every map explains '${comparison.target}'.${stale}`;
}

/** Not live: the connection dropped after the page had shown a reading. Reading, map and diagram
 *  are greyed and say so; the drawing goes on and is replayed on reconnect (socket.js). */
function renderOutage(state) {
  const stale = state.welcome !== null && (state.connection.status === "reconnecting" || state.connection.status === "closed");
  $("layout").classList.toggle("stale", stale);
  $("outage").hidden = !stale;
  $("outage").textContent = stale ? "Not live: this is the reading from before the connection dropped. Keep drawing: it is sent when the connection is back." : "";
}

/**
 * Build (when model or layout changed) and restyle one diagram.
 * @param {{box: HTMLElement, view: object|null, key: string}} diagram
 * @param {{fit: boolean}} options  fit: as tall as the window leaves below the diagram's top (a
 *   strip of the most relevant neurons when the grid cannot fit); else the whole grid
 */
function renderNetwork(diagram, state, before, { fit }) {
  const model = state.welcome.model;
  const width = diagram.box.clientWidth;
  if (!width) return; // not laid out (a closed sheet)
  // The window's height below the box's top, minus what the box's panel keeps below it (--fit-reserve).
  const reserve = Number.parseFloat(getComputedStyle(diagram.box).getPropertyValue("--fit-reserve")) || 0;
  const budget = window.innerHeight - diagram.box.getBoundingClientRect().top - window.scrollY - reserve;
  if (model.family === "cnn") return renderConvnet(diagram, state, width, budget, isEmpty(state.drawing));
  const layout = layoutNetwork(modelSizes(state.welcome), width, budget, { full: !fit });
  const key = `${model.name}/${model.hidden}/${layout.width}/${layout.strip}/${layout.cols}/${layout.cell}/${layout.height}`;
  if (key !== diagram.key) {
    diagram.view = buildNetwork(diagram.box, layout);
    diagram.key = key;
    before = {};
  }
  if (diagram === diagrams.stage) {
    $("network-all").hidden = !layout.strip;
    $("network-all").textContent = `All ${model.hidden} neurons`;
  }
  const frame = state.frame;
  const fresh = frame && frame.model === model.name && frame.activations.length === model.hidden;
  const empty = isEmpty(state.drawing);
  // "Neuron alone" explains no class (the server has output null): no output is marked selected.
  // Nor does a class taken from a blank pad's "prediction".
  const classless = state.selection.alone || (empty && state.selection.implicit);
  // A method that cannot condition on a hidden neuron draws no selection frame on it (selection.js).
  const unconditioned = !conditionsOnHidden(state.config?.method ?? "lrp");
  const shown = { ...state.selection, output: classless ? null : state.selection.output,
                  hidden: unconditioned ? null : state.selection.hidden };
  // A strip chooses its neurons per frame and selection: restyle it whenever either changes.
  const changed = frame !== before.frame || state.selection !== before.selection
    || empty !== isEmpty(before.drawing ?? state.drawing);
  showTemplates(diagram.view, shownTemplates(state));
  if (fresh && changed) updateNetwork(diagram.view, frame, shown, empty);
  else if (!layout.strip && state.selection !== before.selection) markSelection(diagram.view, shown);
}

/** What is sized by the model (docs/protocol.md, "welcome"): the input's caption, a bar per class. */
function renderSizes({ side, classes }) {
  $("input").setAttribute("aria-label", `The ${side} by ${side} pixel image the model sees`);
  $("input-caption").textContent = `What the model sees: ${side} × ${side} pixels`;
  if (bars.length !== classes) bars = buildBars($("bars"), classes);
}

function renderReading(frame, empty) {
  paintInk($("input"), frame.input);
  $("predicted").textContent = empty ? "–" : String(frame.prediction);
  $("confidence").textContent = empty ? "no digit yet" : `${Math.round(frame.probabilities[frame.prediction] * 100)}\u00a0% sure`;
  updateBars(bars, frame.probabilities, empty ? null : frame.prediction);
}

function renderExplanation(state, empty) {
  const frame = state.frame;
  const shown = frame.heatmap ? frame : state.heatmapFrame;
  $("pending").hidden = Boolean(frame.heatmap);
  $("heatmap").parentElement.classList.toggle("stale", !frame.heatmap);
  $("heatmap-words").textContent = empty ? "Explanation" : heatmapTitle(frame, state.welcome);
  const term = empty ? null : heatmapTerm(frame, state.welcome);
  $("term").hidden = !term;
  $("term").textContent = term?.term ?? "";
  $("term").setAttribute("aria-label", term ? `${term.term}: what this term means` : "");
  $("term-name").textContent = term?.term ?? "";
  $("term-text").textContent = term?.text ?? "";
  $("summary").textContent = summarize(frame, empty, state.welcome);
  if (!shown) return;
  const scales = mapScale(shown, state.view.ownScale);
  paintRelevance($("heatmap"), shown.heatmap, state.view.overlay ? shown.input : null, scales.scale);
  legend.render(empty ? null : shown, empty ? null : scales, empty ? ["", ""] : legendWords(shown, state.welcome),
    state.welcome, state.view.ownScale);
  if (frame.heatmap) timer.painted(frame.seq ?? -1);
}

function renderSelectionControls(state) {
  const { hidden, alone: isAlone } = state.selection;
  const lrp = state.config?.method === "lrp";
  $("alone").disabled = hidden === null || !lrp || Boolean(state.selection.layer); // a channel is never alone
  $("alone").checked = hidden !== null && isAlone;
  $("reset").disabled = state.selection.output === null && hidden === null;
}

// Layout changes (rotation, resize): the diagram is rebuilt if its layout
// changed (renderNetwork compares layouts), the ink is redrawn at the new size.
function relayout() {
  rendered = null;
  renderRequest ??= requestAnimationFrame(render);
}
new ResizeObserver(relayout).observe(networkBox);
new ResizeObserver(relayout).observe(networkFull);
// What lies above the diagram moves its top, and so its height budget: render again (the
// diagram is rebuilt only if its layout changed).
const above = new ResizeObserver(() => (renderRequest ??= requestAnimationFrame(render)));
for (const element of document.querySelectorAll(".topbar, .draw, .explain")) above.observe(element);
window.addEventListener("resize", relayout); // a height change alone moves the fit budget
new ResizeObserver(redrawPad).observe($("pad"));
