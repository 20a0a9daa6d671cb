// Where features place their UI: named slots on the stage and panels below it.
//
// The stage (pad, prediction, heatmap, network) fits one screen at every size
// (README.md, "Layout"); it has three slots for small controls that belong
// beside a stage part. Anything larger is a panel below the stage: a section
// with a heading, ordered by `order`, laid out in the page's panel grid
// (one column on phones, more where the width allows).

/** Slots on the stage: "tools" (top bar buttons), "draw" (under the pad), "explain" (under the heatmap's legend). */
const SLOTS = { tools: "tools", draw: "draw-slot", explain: "explain-slot" };

/**
 * The container of a stage slot; append small controls to it.
 * @param {"tools"|"draw"|"explain"} name
 * @returns {HTMLElement}
 */
export function slot(name) {
  const id = SLOTS[name];
  if (!id) throw new Error(`Expected a slot name in ${Object.keys(SLOTS).join(", ")}, got ${name}`);
  return document.getElementById(id);
}

/**
 * Add a panel below the stage.
 * @param {object} options
 * @param {string} options.id     element id of the section (also `data-panel`)
 * @param {string} options.title  its heading, also its accessible name
 * @param {number} [options.order=100]  lower comes first; the page's own panels use 10–50
 * @returns {{section: HTMLElement, body: HTMLElement}} fill `body`
 */
export function addPanel({ id, title, order = 100 }) {
  const section = document.createElement("section");
  section.id = id;
  section.className = "panel";
  section.dataset.panel = id;
  section.style.order = String(order);
  const heading = document.createElement("h2");
  heading.id = `${id}-title`;
  heading.textContent = title;
  const body = document.createElement("div");
  body.className = "panel-body";
  section.setAttribute("aria-labelledby", heading.id);
  section.append(heading, body);
  document.getElementById("panels").append(section);
  return { section, body };
}
