// The examples row: sample digits from the embedded training subset
// (static/examples.json, made by `python -m model_store.examples`), each a
// button that loads it as strokes, replayed live. Usable by keyboard: Tab to
// a digit, Enter or Space.

const KIND_WORDS = {
  clear: "",
  ambiguous: " · hard to tell",
  wrong: " · the model misreads it",
};

/** Draw `strokes` as ink in a small canvas (a button's thumbnail). */
function thumbnail(strokes, sizePx) {
  const canvas = document.createElement("canvas");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.height = Math.round(sizePx * ratio);
  canvas.setAttribute("aria-hidden", "true");
  const context = canvas.getContext("2d");
  context.lineCap = context.lineJoin = "round";
  context.lineWidth = 0.06 * canvas.width;
  context.strokeStyle = "#111827";
  for (const points of strokes) {
    context.beginPath();
    points.forEach(([x, y], k) => (k ? context.lineTo(x * canvas.width, y * canvas.height) : context.moveTo(x * canvas.width, y * canvas.height)));
    if (points.length === 1) context.lineTo(points[0][0] * canvas.width + 0.5, points[0][1] * canvas.height);
    context.stroke();
  }
  return canvas;
}

/**
 * Fill `container` with one button per example.
 * @param {HTMLElement} container
 * @param {{label: number, kind: string, index: number, strokes: number[][][]}[]} examples
 * @param {(example: object) => void} onPick
 */
export function buildExamples(container, examples, onPick) {
  const list = document.createElement("ul");
  list.className = "examples";
  for (const example of examples) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = `example ${example.kind}`;
    button.dataset.index = String(example.index);
    button.dataset.kind = example.kind;
    button.setAttribute("aria-label", `Draw training digit ${example.index}, a ${example.label}${KIND_WORDS[example.kind] ?? ""}`);
    const caption = document.createElement("span");
    caption.textContent = example.kind === "clear" ? `a ${example.label}` : `a ${example.label}?`;
    caption.setAttribute("aria-hidden", "true");
    button.append(thumbnail(example.strokes, 56), caption);
    button.addEventListener("click", () => onPick(example));
    item.append(button);
    list.append(item);
  }
  container.replaceChildren(list);
}

/** The examples file, or [] (with a console warning) if it cannot be read. */
export async function loadExamples(url = "/static/examples.json") {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`examples: HTTP ${response.status}`);
  return (await response.json()).examples;
}
