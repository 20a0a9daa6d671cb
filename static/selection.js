// "Selected hidden neuron" and "Selected output neuron", side by side (issue 11, "Order-free
// selection", as the challenge sketch draws them). Tapping one never drops the other; each has its
// own ✕. A method that cannot condition on a hidden neuron says so here, and the diagram then
// draws no selection frame on it (main.js passes `conditions` to the diagram).

import { methodLabel } from "./summary.js";

function make(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Whether `method` can explain through one hidden neuron (only LRP/CRP does). */
export function conditionsOnHidden(method) {
  return method === "lrp";
}

/** The words of both selections and the note for the method. Pure. */
export function selectionWords(state) {
  const { hidden, output, alone, implicit, layer = null } = state.selection;
  const method = state.config?.method ?? "lrp";
  const prediction = state.frame?.prediction;
  const classless = alone && hidden !== null;
  const unit = layer ? `${layer} channel ${hidden}` : `neuron ${hidden}`; // a cnn's conv channel names its layer
  const hiddenText = hidden === null ? "none" : `${unit}${classless ? " (alone)" : ""}`;
  const outputText = classless ? "none (the neuron alone)"
    : output === null || implicit ? `none: the prediction${prediction === undefined ? "" : ` '${prediction}'`}`
      : `'${output}'`;
  const note = hidden !== null && !conditionsOnHidden(method)
    ? `${methodLabel(state.welcome, method)} explains a class only: the selected hidden neuron does not change its map.`
    : "";
  return { hiddenText, outputText, note };
}

/**
 * Build the panel in `container` (the stage's explain slot).
 * @param {HTMLElement} container
 * @param {{clearHidden: () => void, clearOutput: () => void}} handlers
 */
export function createSelectionPanel(container, { clearHidden, clearOutput }) {
  const box = make("div", { class: "selection-pair", "data-part": "selection" });
  const cell = (title, onClear, part) => {
    const item = make("div", { class: "selection-item", "data-part": part });
    const label = make("span", { class: "selection-title" }, title);
    const value = make("span", { class: "selection-value" });
    const clear = make("button", { type: "button", class: "selection-clear", "aria-label": `Clear: ${title}` });
    clear.addEventListener("click", onClear);
    item.append(label, value, clear);
    box.append(item);
    return { value, clear };
  };
  const hidden = cell("Selected hidden neuron", clearHidden, "selected-hidden");
  const output = cell("Selected output neuron", clearOutput, "selected-output");
  const note = make("p", { class: "selection-note", "data-part": "selection-note" });
  container.append(box, note);

  function render(state) {
    const words = selectionWords(state);
    hidden.value.textContent = words.hiddenText;
    output.value.textContent = words.outputText;
    hidden.clear.disabled = state.selection.hidden === null;
    output.clear.disabled = state.selection.output === null || state.selection.implicit;
    note.textContent = words.note;
    note.hidden = !words.note;
  }

  return { render };
}
