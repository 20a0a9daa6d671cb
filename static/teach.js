// Teach the network (issue 27; docs/protocol.md, "teach" and "forget"): after a reading, a visitor says
// what they drew. A panel below the stage (the stage keeps its one-screen layout and its tab order). Consent is asked each time, in words that say what is stored. The server answers
// `taught` with a deletion token once the drawing is stored; the page keeps the tokens (never in kiosk
// mode: the next visitor could delete the drawing) and lists the drawings, each with a Forget button.

import { addPanel } from "./panels.js";
import { isEmpty } from "./state.js";

/** What the visitor agrees to, shown beside the checkbox each time. */
export const CONSENT_TEXT = "Store this drawing so the network can learn from it. Stored: the strokes you drew, " +
  "the digit you choose and what the network read. Nothing about you: no name, no address, no cookie. " +
  "A curator checks every drawing before a model learns from it.";

/** localStorage key of the drawings this browser taught: [{id, token, label}]. */
export const STORAGE_KEY = "xai-taught";

/** What each refusal of a teach or forget means to a visitor (docs/protocol.md, "error"). */
const REFUSALS = {
  consent_required: "Please tick the box to agree first.",
  bad_label: "Pick the digit you drew (0 to 9).",
  empty_drawing: "Draw a digit first.",
  rate_limited: "That is a lot of teaching at once: wait a minute, then try again.",
  teach_failed: "The server could not store it just now; nothing was kept. Try again.",
  unknown_token: "This drawing was already deleted.",
};

function make(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * The taught drawings kept in `storage`, oldest first; [] when storage is unreadable or holds no list.
 * @param {Storage|null} storage
 * @returns {{id: number, token: string, label: number}[]}
 */
export function readTaught(storage) {
  if (!storage) return [];
  try {
    const list = JSON.parse(storage.getItem(STORAGE_KEY) ?? "[]");
    return Array.isArray(list) ? list.filter((item) => Number.isInteger(item?.id) && typeof item.token === "string") : [];
  } catch (error) {
    console.warn("xai: the list of taught drawings is unreadable", error.message);
    return [];
  }
}

function writeTaught(storage, list) {
  try {
    storage.setItem(STORAGE_KEY, JSON.stringify(list));
  } catch (error) {
    // Private browsing or a full quota: the drawing is stored, only this page cannot offer to delete it.
    console.warn("xai: cannot keep the deletion token", error.message);
  }
}

/**
 * The "Teach the network" panel: its button, the dialog it opens and, outside kiosk mode, the taught drawings.
 * @param {object} options
 * @param {(message: object) => (number|null)} options.send  sends a protocol message; its seq, null if offline
 * @param {boolean} options.kiosk  a shared screen: no token is kept
 * @param {Storage|null} [options.storage]  where tokens are kept (default localStorage)
 * @returns {{receive: (message: object) => boolean, refused: (seq: number|null, code: string) => boolean,
 *            render: (state: object) => void, reset: () => void}}
 */
export function createTeaching({ send, kiosk, storage = kiosk ? null : window.localStorage }) {
  const panel = addPanel({ id: "teach", title: "Teach the network", order: 4 });
  const open = make("button", { type: "button", class: "teach-open", "data-part": "teach", disabled: "" },
    "Teach it what you drew");
  panel.body.append(make("p", { class: "hint" }, "Did it read your digit right? Tell it what you drew: a curator " +
    "checks it, and the network learns from it in its next training round."), open);

  const dialog = make("dialog", { class: "teach-dialog", "aria-labelledby": "teach-dialog-title", "data-part": "teach-dialog" });
  const form = make("form", { method: "dialog" });
  const reading = make("p", { class: "teach-reading" });
  const digits = make("fieldset", { class: "teach-digits" });
  digits.append(make("legend", {}, "Which digit did you draw?"));
  for (let digit = 0; digit <= 9; digit += 1) {
    const label = make("label", { class: "teach-digit" });
    label.append(make("input", { type: "radio", name: "label", value: String(digit) }), make("span", {}, String(digit)));
    digits.append(label);
  }
  const consent = make("input", { type: "checkbox", name: "consent", id: "teach-consent" });
  const consentLabel = make("label", { class: "teach-consent", for: "teach-consent" });
  consentLabel.append(consent, make("span", {}, ` I agree. ${CONSENT_TEXT}`));
  const status = make("p", { class: "teach-status", role: "status" });
  const submit = make("button", { type: "submit", value: "teach", "data-part": "teach-send", disabled: "" }, "Store it");
  const cancel = make("button", { type: "button" }, "Close");
  const buttons = make("div", { class: "buttons" });
  buttons.append(submit, cancel);
  form.append(make("h2", { id: "teach-dialog-title" }, "Teach the network"), reading, digits, consentLabel, buttons, status);
  dialog.append(form);
  document.body.append(dialog);

  // Outside kiosk mode: this browser's taught drawings, each with Forget (the tokens stay on this device).
  const listing = kiosk ? null : make("div", { id: "taught", class: "taught" });
  const list = make("ul", { class: "taught-list", "data-part": "taught" });
  const panelStatus = make("p", { class: "hint", role: "status" });
  if (listing) {
    listing.append(make("h3", {}, "Drawings you taught"), list, panelStatus);
    panel.body.append(listing);
  }

  let pending = []; // requests sent and not yet answered, in order: {seq, kind: "teach"|"forget", id?}
  let taught = readTaught(storage);

  function chosen() {
    return form.querySelector("input[name=label]:checked");
  }

  function refreshSubmit() {
    submit.disabled = !chosen() || !consent.checked || pending.some((request) => request.kind === "teach");
  }

  function renderList() {
    if (!listing) return;
    list.replaceChildren(...taught.map(({ id, label }) => {
      const item = make("li", {}, `Drawing #${id}, a ${label} `);
      const forget = make("button", { type: "button", "data-part": "forget", "data-id": String(id) }, "Forget it");
      forget.disabled = pending.some((request) => request.id === id);
      forget.addEventListener("click", () => forgetDrawing(id));
      item.append(forget);
      return item;
    }));
    if (!taught.length) list.append(make("li", { class: "hint" }, "None yet. After a reading, tell the network what you drew."));
  }

  function forgetDrawing(id) {
    const entry = taught.find((item) => item.id === id);
    if (!entry) return;
    const seq = send({ type: "forget", delete_token: entry.token });
    if (seq === null) {
      panelStatus.textContent = "Not connected: try again in a moment.";
      return;
    }
    pending.push({ seq, kind: "forget", id });
    panelStatus.textContent = `Deleting drawing #${id}…`;
    renderList();
  }

  function forgotten(id) {
    taught = taught.filter((item) => item.id !== id);
    if (storage) writeTaught(storage, taught);
    renderList();
  }

  let lastState = null;
  open.addEventListener("click", () => {
    form.reset(); // consent is asked each time: never remembered
    const prediction = lastState?.frame?.prediction;
    reading.textContent = prediction === undefined ? "" : `The network read a ${prediction}.`;
    status.textContent = "";
    refreshSubmit();
    dialog.showModal();
  });
  form.addEventListener("change", refreshSubmit);
  cancel.addEventListener("click", () => dialog.close());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const digit = chosen();
    if (!digit || !consent.checked) return;
    const seq = send({ type: "teach", label: Number(digit.value), consent: true });
    if (seq === null) {
      status.textContent = "Not connected: try again in a moment.";
      return;
    }
    pending.push({ seq, kind: "teach", label: Number(digit.value) });
    status.textContent = "Storing…";
    refreshSubmit();
  });

  /** Take the answer of the oldest pending request of `kind` (the server answers in order). */
  function settle(kind) {
    const index = pending.findIndex((request) => request.kind === kind);
    return index < 0 ? null : pending.splice(index, 1)[0];
  }

  function receive(message) {
    if (message.type === "taught") {
      const request = settle("teach");
      if (storage && request) {
        taught = [...taught, { id: message.id, token: message.delete_token, label: request.label }];
        writeTaught(storage, taught);
        renderList();
      }
      status.textContent = storage
        ? `Thank you! Stored as drawing #${message.id}. You can delete it under "Drawings you taught".`
        : `Thank you! Stored as drawing #${message.id}.`;
      form.reset();
      refreshSubmit();
      return true;
    }
    if (message.type === "forgotten") {
      settle("forget");
      forgotten(message.id);
      panelStatus.textContent = `Drawing #${message.id} is deleted.`;
      return true;
    }
    return false;
  }

  function refused(seq, code) {
    const index = pending.findIndex((request) => request.seq === seq);
    if (index < 0) return false;
    const [request] = pending.splice(index, 1);
    const text = REFUSALS[code] ?? `The server refused it (${code}).`;
    if (request.kind === "teach") {
      status.textContent = text;
      refreshSubmit();
    } else {
      if (code === "unknown_token") forgotten(request.id);
      panelStatus.textContent = text;
      renderList();
    }
    return true;
  }

  function render(state) {
    lastState = state;
    open.disabled = state.connection.status !== "open" || !state.frame || isEmpty(state.drawing);
    if (state.connection.status !== "open" && pending.length) {
      // Answers of a dropped connection never come: say so rather than wait forever.
      const teaching = pending.some((request) => request.kind === "teach");
      pending = [];
      if (teaching) status.textContent = "The connection dropped before the answer: teach it again if you like.";
      refreshSubmit();
      renderList();
    }
  }

  /** Kiosk attract loop: the next visitor finds no open dialog. */
  function reset() {
    if (dialog.open) dialog.close();
    form.reset();
    status.textContent = "";
  }

  renderList();
  return { receive, refused, render, reset };
}
