// The prediction bar chart: a column per class (percent · bar · digit), built
// once per class count and restyled per frame.

/**
 * Fill `list` (an <ol>) with a column per class.
 * @param {HTMLOListElement} list
 * @param {number} classes  the model's output classes (state.js modelSizes)
 * @returns {{item: HTMLElement, bar: HTMLElement, value: HTMLElement}[]}
 */
export function buildBars(list, classes) {
  list.replaceChildren();
  return Array.from({ length: classes }, (_, digit) => {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.className = "bar-digit";
    label.textContent = String(digit);
    const track = document.createElement("span");
    track.className = "bar-track";
    const bar = document.createElement("span");
    bar.className = "bar-fill";
    track.append(bar);
    const value = document.createElement("span");
    value.className = "bar-value";
    // Read as "3: 100 percent" (aria-label on the item), not as its three parts.
    for (const part of [value, track, label]) part.setAttribute("aria-hidden", "true");
    item.setAttribute("aria-label", `${digit}: no reading`);
    item.append(value, track, label);
    list.append(item);
    return { item, bar, value };
  });
}

/**
 * Show the probabilities of a frame; the predicted column is highlighted.
 * @param {ReturnType<typeof buildBars>} rows
 * @param {number[]} probabilities  one value per class, in [0, 1]
 * @param {number|null} prediction  null: nothing drawn, no column highlighted
 */
export function updateBars(rows, probabilities, prediction) {
  rows.forEach(({ item, bar, value }, digit) => {
    const p = prediction === null ? 0 : probabilities[digit];
    bar.style.transform = `scaleY(${p})`;
    const percent = Math.round(p * 100);
    value.textContent = prediction === null ? "" : String(percent);
    item.setAttribute("aria-label", prediction === null ? `${digit}: no reading` : `${digit}: ${percent} percent`);
    item.classList.toggle("predicted", digit === prediction);
  });
}
