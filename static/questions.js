// The three questions of issue 16, asked of the network (docs/protocol.md, "Contrast", "Knock-out",
// "counterfactual"):
//   why c and not c′?           a contrast: select with `versus`;
//   what would make it a c′?     a counterfactual, asked when the visitor pauses and taps "Show me";
//   what if this neuron were gone? a knock-out: configure with `knockout`.
// Views and gestures only: every change goes out through the handlers main.js gives, and comes
// back in the state (selection.versus, config.knockout) and in the frames.

import { decode } from "./arrays.js";
import { paintInk, writePixels } from "./heatmap.js";
import { addPanel, slot } from "./panels.js";
import { modelSizes } from "./state.js";

/** How long a press on a neuron must last to count as a long press (ms): the diagram's question gesture. */
export const LONG_PRESS_MS = 550;
/** How long the morph from the drawing to the counterfactual takes (ms). */
const MORPH_MS = 1600;

function make(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function percent(probability) {
  return `${Math.round(probability * 100)}\u00a0%`;
}

/** "+12 points", "−3 points": a change of probability in percentage points, with a true minus. */
function points(delta) {
  const value = Math.round(delta * 100);
  return `${value > 0 ? "+" : value < 0 ? "−" : "±"}${Math.abs(value)} points`;
}

/** The class a contrast or counterfactual starts from: the selected class, else the prediction. */
function shownTarget(state) {
  return state.selection.output ?? state.frame?.prediction ?? null;
}

/** The runner-up of a frame: the second most probable class. */
export function runnerUp(probabilities) {
  return [...probabilities.keys()].sort((a, b) => probabilities[b] - probabilities[a])[1];
}

/**
 * The score gap the intact reading rests on, before and after a knock-out: the intact prediction c's
 * logit minus the intact runner-up r's. A probability stuck at 100 % hides a knock-out's effect; this
 * gap shows it. Intact, z_c − z_r = ln p_c − ln p_r (softmax's constant cancels), from
 * `knockout_effect.probabilities`; now, from the frame's `logits`.
 * @param {object} frame  a frame with `knockout_effect`
 * @returns {{winner: number, runnerUp: number, intact: number, now: number}}  intact: Infinity when p_r
 *   underflowed float32 (a gap beyond ~100)
 */
export function knockoutMargin(frame) {
  const { prediction: winner, probabilities } = frame.knockout_effect;
  const runnerUp = runnerUpOf(probabilities, winner);
  return { winner, runnerUp, intact: Math.log(probabilities[winner]) - Math.log(probabilities[runnerUp]),
           now: frame.logits[winner] - frame.logits[runnerUp] };
}

/** The most probable class other than `winner`. */
function runnerUpOf(probabilities, winner) {
  return [...probabilities.keys()].filter((c) => c !== winner).reduce((a, b) => (probabilities[b] > probabilities[a] ? b : a));
}

/** "4.2", "−1.3": a score with a true minus. */
function score(value) {
  return `${value < 0 ? "−" : ""}${Math.abs(value).toFixed(1)}`;
}

/** The plain sentence of a frame with units knocked out. */
export function knockoutSentence(frame) {
  const effect = frame.knockout_effect;
  const units = frame.knockout;
  const names = units.length === 1 ? `neuron ${units[0]}` : `${units.length} neurons (${units.join(", ")})`;
  const now = `it reads ${frame.prediction} (${percent(frame.probabilities[frame.prediction])})`;
  const before = `intact it read ${effect.prediction} (${percent(effect.probabilities[effect.prediction])})`;
  const { winner, runnerUp, intact, now: gap } = knockoutMargin(frame);
  const from = Number.isFinite(intact) ? score(intact) : "over 100";
  const change = Number.isFinite(intact) ? ` (${gap - intact >= 0 ? "+" : "−"}${Math.abs(gap - intact).toFixed(1)})` : "";
  return `With ${names} switched off, ${now}; ${before}. `
    + `The score (logit) of ${winner} minus that of ${runnerUp}: ${from} intact, ${score(gap)} now${change}.`;
}

/** The plain sentence of a counterfactual answer. */
export function counterfactualSentence(answer) {
  return `Adding the red ink and taking away the blue would make the network read ${answer.target} `
    + `(${percent(answer.probability)} sure). ${Math.round(answer.changed_ink * 100)}\u00a0% of the ink changes. `
    + (answer.plausible
      ? `It looks like a real ${answer.target}: ${answer.agreeing_neighbours} of the 20 most similar training digits are ${answer.target}s.`
      : `It may not look like a real ${answer.target}: only ${answer.agreeing_neighbours} of the 20 most similar training digits are ${answer.target}s.`);
}

/** Paint the change from `before` to `after` (images in [0, 1]): added ink red, removed ink blue, kept ink grey. */
function paintChange(canvas, before, after) {
  writePixels(canvas, after.shape, (i) => {
    const delta = after.values[i] - before.values[i];
    const kept = Math.min(before.values[i], after.values[i]);
    const paper = 255 - Math.round(kept * 150);
    const strength = Math.min(1, Math.abs(delta) * 1.5);
    const colour = delta > 0 ? [178, 24, 43] : [33, 102, 172]; // ColorBrewer RdBu ends
    return colour.map((c) => Math.round(c * strength + paper * (1 - strength)));
  });
}

/** Paint the blend `(1 − f)·before + f·after` as ink. */
function paintBlend(canvas, before, after, fraction) {
  const values = Float32Array.from(before.values, (v, i) => v + fraction * (after.values[i] - v));
  paintInk(canvas, { values, shape: after.shape });
}

/** A button per class in `container` (its former buttons replaced). */
function digitButtons(container, classes, label, onPress) {
  const buttons = [...Array(classes).keys()].map((digit) => {
    const button = make("button", { type: "button", class: "digit-button", "aria-pressed": "false",
                                     "aria-label": `${label} ${digit}` }, String(digit));
    button.addEventListener("click", () => onPress(digit));
    return button;
  });
  container.replaceChildren(...buttons);
  return buttons;
}

/**
 * Build the questions' views and gestures.
 * @param {object} options
 * @param {() => object} options.getState           the page state (state.js)
 * @param {(selection: object) => void} options.select  send a selection (main.js `select`)
 * @param {(change: object) => void} options.configure  send a configure change (main.js)
 * @param {(message: object) => (number|null)} options.send  send a message, returns its seq
 * @param {HTMLElement[]} options.diagrams           the network containers (stage, sheet)
 * @param {HTMLElement} options.card                 the neuron card section
 * @returns {{receive: Function, refused: Function, render: Function, refresh: Function}}
 *   refresh: call when a stroke ends or the drawing changes (undo, clear)
 */
export function createQuestions({ getState, select, configure, send, diagrams, card }) {
  // ---- why c and not c′: a "versus" picker beside the heatmap ----
  const versusBox = make("div", { class: "versus", role: "group", "aria-labelledby": "versus-label" });
  const versusLabel = make("label", { id: "versus-label", for: "versus" }, "Why not");
  const versusPicker = make("select", { id: "versus", "aria-describedby": "versus-hint" });
  const versusHint = make("span", { id: "versus-hint", class: "hint" }, "or long-press a digit in the network");
  versusBox.append(versusLabel, versusPicker, versusHint);
  slot("explain").append(versusBox);
  versusPicker.addEventListener("change", () => setVersus(versusPicker.value === "" ? null : Number(versusPicker.value)));

  function setVersus(versus) {
    const state = getState();
    let output = shownTarget(state);
    // Arrow keys select the outputs they reach: `v` on the selected class compares the prediction with it.
    if (versus !== null && versus === output && state.frame) output = state.frame.prediction;
    if (versus !== null && (output === null || versus === output || state.selection.alone)) return;
    select({ ...state.selection, output: versus === null ? state.selection.output : output, versus,
             implicit: versus === null ? state.selection.implicit : false });
  }

  // ---- the panel: counterfactual and knock-out ----
  const { body } = addPanel({ id: "questions", title: "Ask the network", order: 60 });

  const what = make("section", { class: "question", "aria-labelledby": "counterfactual-title" });
  what.append(make("h3", { id: "counterfactual-title" }, "What would make it a …?"));
  const targets = make("div", { class: "digit-row", role: "group", "aria-label": "Target digit" });
  let chosenTarget = null; // null: the runner-up
  let targetButtons = []; // a button per class of the model, and the versus picker's options (fillClasses)
  const askButton = make("button", { type: "button", id: "counterfactual-ask" }, "Show me");
  askButton.addEventListener("click", ask);
  const note = make("p", { class: "hint", id: "counterfactual-note", "aria-live": "polite" },
                    "Pause drawing, pick a digit: the network shows the nearest drawing it would read as that digit.");
  const figures = make("div", { class: "counterfactual-figures", hidden: "" });
  const canvases = {};
  for (const [key, caption] of [["morph", "From your drawing to it"], ["change", "Ink to add (red) and remove (blue)"]]) {
    const figure = make("figure", { class: "card-figure" });
    canvases[key] = make("canvas", { class: "pixelated", "data-question": key, role: "img", "aria-label": caption });
    figure.append(canvases[key], make("figcaption", {}, caption));
    figures.append(figure);
  }
  const morph = make("input", { type: "range", min: "0", max: "100", value: "100", id: "morph",
                                "aria-label": "Morph from your drawing (0) to the counterfactual (100)" });
  // The visitor's hand on the slider stops the animation.
  morph.addEventListener("input", () => {
    cancelAnimationFrame(animation);
    showMorph(Number(morph.value) / 100);
  });
  const sentence = make("p", { class: "summary", id: "counterfactual-sentence", "aria-live": "polite" });
  what.append(targets, askButton, note, figures, morph, sentence);
  morph.hidden = true;

  const gone = make("section", { class: "question", "aria-labelledby": "knockout-title" });
  gone.append(make("h3", { id: "knockout-title" }, "What if neurons were gone?"));
  const knockHint = make("p", { class: "hint" }, "Long-press a hidden neuron");
  knockHint.append(make("span", { class: "keys-only" }, " (or press k on it)"),
                   " to switch it off; everything recomputes without it.");
  const knockList = make("ul", { class: "knockout-list", id: "knockout-list" });
  const knockSentence = make("p", { class: "summary", id: "knockout-sentence", "aria-live": "polite" });
  const restore = make("button", { type: "button", id: "knockout-restore" }, "Switch every neuron back on");
  restore.addEventListener("click", () => configure({ knockout: [] }));
  gone.append(knockHint, knockSentence, knockList, restore);
  body.append(what, gone);

  // The toggle on the neuron card, for the selected hidden neuron.
  const cardToggle = make("button", { type: "button", id: "knockout-toggle", class: "knockout-toggle", "aria-pressed": "false" });
  cardToggle.addEventListener("click", () => toggleKnockout(getState().selection.hidden));
  card.append(cardToggle);

  function toggleKnockout(unit) {
    const state = getState();
    if (unit === null || unit === undefined || !state.config) return;
    const now = state.config.knockout ?? [];
    const next = now.includes(unit) ? now.filter((j) => j !== unit) : [...now, unit].sort((a, b) => a - b);
    configure({ knockout: next });
  }

  // ---- gestures on the diagram: long press (touch, pen, mouse) and keys ----
  for (const box of diagrams) listenLongPress(box);

  function question(picked) {
    if (picked.kind === "output") setVersus(getState().selection.versus === picked.index ? null : picked.index);
    else toggleKnockout(picked.index);
  }

  function listenLongPress(box) {
    let timer = null;
    let fired = false;
    const cancel = () => {
      clearTimeout(timer);
      timer = null;
    };
    box.addEventListener("pointerdown", (event) => {
      const picked = pickedNeuron(event);
      fired = false;
      if (!picked) return;
      timer = setTimeout(() => {
        timer = null;
        fired = true;
        question(picked);
      }, LONG_PRESS_MS);
    });
    for (const type of ["pointerup", "pointercancel", "pointerleave"]) box.addEventListener(type, cancel);
    // A long press is not also a tap: its click must not select the neuron (capture: before network.js).
    box.addEventListener("click", (event) => {
      if (fired) {
        fired = false;
        event.stopPropagation();
      }
    }, true);
    box.addEventListener("contextmenu", (event) => {
      if (pickedNeuron(event)) event.preventDefault(); // a touch long press opens no menu here
    });
    box.addEventListener("keydown", (event) => {
      const picked = pickedNeuron(event);
      if (!picked) return;
      if ((event.key === "v" && picked.kind === "output") || (event.key === "k" && picked.kind === "hidden")) {
        event.preventDefault();
        question(picked);
      }
    });
  }

  // ---- the counterfactual: ask, receive, show ----
  let asked = null; // {seq, version, input}: the request in flight, with the drawing it asked about
  let answer = null; // {target, image, probability, changed_ink, version, input}
  let animation = null;

  function ask() {
    const state = getState();
    if (!state.frame || !state.drawing.strokes.some((stroke) => stroke.points.length)) {
      note.textContent = "Draw a digit first.";
      return;
    }
    const seq = send({ type: "counterfactual", target: chosenTarget }); // null: the server takes the runner-up
    if (seq === null) return;
    asked = { seq, version: state.drawing.version, input: state.frame.input };
    note.textContent = "Searching for a nearby drawing…";
    renderTargets(state);
  }

  function receive(message) {
    if (!asked || message.seq !== asked.seq) return; // an answer to an earlier request
    answer = { ...message, image: decode(message.image), version: asked.version, input: asked.input };
    asked = null;
    chosenTarget ??= message.target; // the runner-up it answered stays the question as the drawing changes
    figures.hidden = false;
    morph.hidden = false;
    paintChange(canvases.change, answer.input, answer.image);
    sentence.textContent = counterfactualSentence(answer);
    note.textContent = `Found in ${Math.round(message.compute_ms)} ms.`;
    animate();
    renderTargets(getState());
  }

  function refused(seq, code) {
    if (!asked || seq !== asked.seq) return false;
    asked = null;
    note.textContent = code === "no_counterfactual"
      ? "The network, as it is now, reads none of its training examples of that digit as that digit: there is nothing to morph towards."
      : code === "counterfactual_failed"
        ? "The server is busy and could not finish the search: ask again."
        : `The server refused the question (${code}).`;
    return true;
  }

  function showMorph(fraction) {
    if (answer) paintBlend(canvases.morph, answer.input, answer.image, fraction);
  }

  function animate() {
    cancelAnimationFrame(animation);
    if (window.matchMedia("(prefers-reduced-motion: reduce)").matches) {
      morph.value = "100";
      showMorph(1);
      return;
    }
    const start = performance.now();
    const step = (now) => {
      const fraction = Math.min(1, (now - start) / MORPH_MS);
      morph.value = String(Math.round(fraction * 100));
      showMorph(fraction);
      if (fraction < 1) animation = requestAnimationFrame(step);
    };
    animation = requestAnimationFrame(step);
  }

  function renderTargets(state) {
    const frame = state.frame;
    const fallback = frame ? runnerUp(frame.probabilities) : null;
    const current = chosenTarget ?? fallback;
    targetButtons.forEach((button, digit) => button.setAttribute("aria-pressed", String(digit === current)));
    askButton.textContent = current === null ? "Show me" : `Show me what would make it a ${current}`;
  }

  /** The target buttons and the versus picker's options: one per class of the welcome's model. */
  function fillClasses(classes) {
    targetButtons = digitButtons(targets, classes, "Make it a", (digit) => {
      chosenTarget = digit;
      ask();
    });
    versusPicker.replaceChildren(make("option", { value: "" }, "—"),
      ...targetButtons.map((_, d) => make("option", { value: String(d) }, String(d))));
  }

  // ---- rendering: called by main.js with every new state ----
  function render(state) {
    const classes = state.welcome ? modelSizes(state.welcome).classes : 0;
    if (classes !== targetButtons.length) fillClasses(classes);
    const frame = state.frame;
    const versus = state.selection.versus ?? null;
    versusPicker.value = versus === null ? "" : String(versus);
    const target = shownTarget(state);
    for (const option of versusPicker.options) option.disabled = option.value !== "" && Number(option.value) === target;
    // A contrast goes through a unit of fc1 or the whole network, never a conv channel (docs/protocol.md, "select").
    versusPicker.disabled = state.config?.method !== "lrp" || state.selection.alone || target === null || Boolean(state.selection.layer);
    renderTargets(state);
    if (answer && answer.model !== state.config?.model) {
      // Another model now reads the drawing: this answer was the old model's.
      answer = null;
      chosenTarget = null;
      figures.hidden = true;
      morph.hidden = true;
      sentence.textContent = "";
      note.textContent = "The model changed: ask again.";
    }
    if (answer && answer.version !== state.drawing.version) quietly(note, "The drawing has changed since: ask again.");

    const knockout = state.config?.knockout ?? [];
    const hidden = state.selection.hidden;
    cardToggle.hidden = hidden === null;
    if (hidden !== null) {
      const off = knockout.includes(hidden);
      cardToggle.setAttribute("aria-pressed", String(off));
      cardToggle.textContent = off ? `Switch neuron ${hidden} back on` : `Switch neuron ${hidden} off`;
    }
    restore.disabled = knockout.length === 0;
    for (const box of diagrams) {
      for (const group of box.querySelectorAll('.neuron[data-kind="hidden"]')) {
        group.classList.toggle("knocked-out", knockout.includes(Number(group.dataset.index)));
      }
    }
    renderKnockout(frame, knockout);
  }

  /** Write a live region only when its words change: a rewrite with the same words is announced again. */
  function quietly(region, text) {
    if (region.textContent !== text) region.textContent = text;
  }

  let listed = ""; // what the list shows, so that it is rebuilt (and focus lost) only when that changes

  function renderKnockout(frame, knockout) {
    const effect = frame?.knockout_effect ?? null;
    if (!knockout.length || !effect || frame.knockout.join() !== knockout.join()) {
      quietly(knockSentence, knockout.length ? "" : "Every neuron is on.");
      if (!knockout.length) {
        knockList.replaceChildren();
        listed = "";
      }
      return;
    }
    quietly(knockSentence, knockoutSentence(frame));
    const key = JSON.stringify(effect.units.map(({ unit, share, delta_probability: d }) => [unit, Math.round(share * 100), Math.round(d * 100)]))
      + effect.prediction;
    if (key === listed) return;
    listed = key;
    knockList.replaceChildren(...effect.units.map(({ unit, share, delta_probability: delta }) => {
      const item = make("li", { "data-unit": String(unit) });
      const words = make("span", {}, `Neuron ${unit}: ${share >= 0 ? "+" : "−"}${Math.abs(Math.round(share * 100))}\u00a0% `
        + `of the evidence for ${effect.prediction}; alone it moves p(${effect.prediction}) ${points(delta)}`);
      const back = make("button", { type: "button", "aria-label": `Switch neuron ${unit} back on` }, "On");
      back.addEventListener("click", () => toggleKnockout(unit));
      item.append(words, back);
      return item;
    }));
  }

  // Once asked, the counterfactual follows the drawing: asked again each time the pen rests.
  let pause = null;
  function refresh() {
    clearTimeout(pause);
    if (answer === null && asked === null) return;
    pause = setTimeout(() => {
      const state = getState();
      if (answer?.version !== state.drawing.version && asked === null) ask();
    }, getState().welcome.limits.pause_ms); // answered or asked: a welcome came
  }

  return { receive, refused, render, refresh };
}

/** The neuron an event happened on (network.js marks each with data-kind and data-index). */
function pickedNeuron(event) {
  const group = event.target.closest?.(".neuron");
  return group ? { kind: group.dataset.kind, index: Number(group.dataset.index) } : null;
}
