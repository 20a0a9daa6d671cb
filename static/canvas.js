// The drawing pad: Pointer Events (mouse, touch, pen) → points in canvas
// fractions, ink drawn locally at once, points handed on once per animation
// frame so they stream to the server while the stroke is still moving.

/** Pen width as a fraction of the pad: about the stroke of a felt pen on paper. */
const PEN_FRACTION = 0.055;
const INK_COLOUR = "#111827";

/**
 * Attach drawing to a canvas.
 * @param {HTMLCanvasElement} canvas  styled with `touch-action: none` (no scroll or zoom while drawing)
 * @param {object} handlers
 * @param {() => boolean} handlers.onStrokeStart  a pointer went down; false refuses the stroke (limits)
 * @param {(points: number[][], eventTimeMs: number) => void} handlers.onPoints
 *        new [x, y] points of the current stroke (fractions in [0, 1]); eventTimeMs is
 *        the `performance.now()` time of the earliest pointer event in the batch
 * @param {() => void} handlers.onStrokeEnd
 * @returns {{redraw: (strokes: {points: number[][]}[]) => void, endStroke: () => void}}
 */
export function createPad(canvas, { onStrokeStart, onPoints, onStrokeEnd }) {
  const context = canvas.getContext("2d");
  let activePointer = null; // the one pointer drawing; others (a resting palm) are ignored
  let lastPoint = null;
  let pending = []; // points not yet handed on
  let pendingSince = null; // event time of the earliest pending point
  let frameRequest = null;

  function toFraction(event) {
    const box = canvas.getBoundingClientRect();
    const x = (event.clientX - box.left) / box.width;
    const y = (event.clientY - box.top) / box.height;
    return [Math.min(1, Math.max(0, x)), Math.min(1, Math.max(0, y))];
  }

  function inkStyle() {
    context.lineCap = "round";
    context.lineJoin = "round";
    context.strokeStyle = INK_COLOUR;
    context.fillStyle = INK_COLOUR;
    context.lineWidth = PEN_FRACTION * canvas.width;
  }

  function drawSegment(from, to) {
    const [w, h] = [canvas.width, canvas.height];
    context.beginPath();
    context.moveTo(from[0] * w, from[1] * h);
    context.lineTo(to[0] * w, to[1] * h);
    context.stroke();
  }

  function drawDot(point) {
    context.beginPath();
    context.arc(point[0] * canvas.width, point[1] * canvas.height, (PEN_FRACTION * canvas.width) / 2, 0, 2 * Math.PI);
    context.fill();
  }

  function addPoint(point, timeMs) {
    if (lastPoint) drawSegment(lastPoint, point);
    else drawDot(point);
    lastPoint = point;
    pending.push(point);
    pendingSince ??= timeMs;
    frameRequest ??= requestAnimationFrame(flush);
  }

  function flush() {
    frameRequest = null;
    if (!pending.length) return;
    const [points, since] = [pending, pendingSince];
    pending = [];
    pendingSince = null;
    onPoints(points, since);
  }

  function down(event) {
    // The main button only: a right click or a pen's barrel button does not draw.
    if (activePointer !== null || !event.isPrimary || event.button !== 0) return;
    event.preventDefault();
    if (!onStrokeStart()) return;
    activePointer = event.pointerId;
    canvas.setPointerCapture(event.pointerId);
    inkStyle();
    lastPoint = null;
    addPoint(toFraction(event), event.timeStamp);
  }

  function move(event) {
    if (event.pointerId !== activePointer) return;
    // Coalesced events carry the points the browser merged into this one
    // (Pointer Events Level 3 §"getCoalescedEvents"): smoother curves.
    const events = event.getCoalescedEvents?.() ?? [];
    for (const each of events.length ? events : [event]) addPoint(toFraction(each), each.timeStamp);
  }

  function up(event) {
    if (event.pointerId !== activePointer) return;
    activePointer = null;
    lastPoint = null;
    if (frameRequest !== null) cancelAnimationFrame(frameRequest);
    flush();
    onStrokeEnd();
  }

  canvas.addEventListener("pointerdown", down);
  canvas.addEventListener("pointermove", move);
  canvas.addEventListener("pointerup", up);
  canvas.addEventListener("pointercancel", up);
  canvas.addEventListener("contextmenu", (event) => event.preventDefault()); // a long press is not a menu

  /**
   * Drop the stroke in progress (Undo or Clear while the pen is down): its
   * pending points are not handed on, and the pointer draws nothing more
   * until it is lifted and put down again.
   */
  function endStroke() {
    if (activePointer !== null && canvas.hasPointerCapture(activePointer)) canvas.releasePointerCapture(activePointer);
    activePointer = null;
    lastPoint = null;
    pending = [];
    pendingSince = null;
    if (frameRequest !== null) cancelAnimationFrame(frameRequest);
    frameRequest = null;
  }

  /**
   * Size the backing store to the element (device pixels) and draw `strokes` again, over what
   * `background(context)` paints first (a photo), if given.
   */
  function redraw(strokes, background = null) {
    const ratio = window.devicePixelRatio || 1;
    const size = Math.max(1, Math.round(canvas.clientWidth * ratio));
    if (canvas.width !== size || canvas.height !== size) {
      canvas.width = size;
      canvas.height = size;
    }
    context.clearRect(0, 0, canvas.width, canvas.height);
    background?.(context);
    inkStyle();
    for (const stroke of strokes) {
      stroke.points.forEach((point, i) => (i ? drawSegment(stroke.points[i - 1], point) : drawDot(point)));
    }
    const last = strokes[strokes.length - 1];
    if (activePointer !== null && last?.points.length) lastPoint = last.points[last.points.length - 1];
  }

  return { redraw, endStroke };
}
