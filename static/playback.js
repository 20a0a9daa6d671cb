// Strokes drawn point by point over animation frames, as a hand would: an
// example digit, the kiosk's attract loop. Timing only; what a point does
// (state, messages, ink) is the caller's.

/**
 * Play `strokes` from the start.
 * @param {number[][][]} strokes  [[x, y], …] per stroke, canvas fractions
 * @param {object} handlers
 * @param {() => boolean} handlers.onStrokeStart  false stops the playback (a full drawing)
 * @param {(points: number[][]) => void} handlers.onPoints  the points of the current stroke this frame
 * @param {() => void} [handlers.onStrokeEnd]
 * @param {() => void} [handlers.onDone]  after the last stroke (not when cancelled)
 * @param {{pointsPerFrame?: number, strokePauseMs?: number}} [pace]
 * @returns {{cancel: () => void}}
 */
export function play(strokes, { onStrokeStart, onPoints, onStrokeEnd = () => {}, onDone = () => {} },
  { pointsPerFrame = 1, strokePauseMs = 150 } = {}) {
  let stroke = 0;
  let point = 0;
  let timer = null;
  let frame = null;
  let cancelled = false;

  function step() {
    frame = null;
    if (cancelled) return;
    if (stroke >= strokes.length) {
      onDone();
      return;
    }
    if (point === 0 && !onStrokeStart()) return;
    const points = strokes[stroke].slice(point, point + pointsPerFrame);
    point += points.length;
    onPoints(points);
    if (point < strokes[stroke].length) {
      frame = requestAnimationFrame(step);
      return;
    }
    onStrokeEnd();
    stroke += 1;
    point = 0;
    timer = setTimeout(() => {
      timer = null;
      frame = requestAnimationFrame(step);
    }, strokePauseMs);
  }

  frame = requestAnimationFrame(step);
  return {
    cancel() {
      cancelled = true;
      if (frame !== null) cancelAnimationFrame(frame);
      if (timer !== null) clearTimeout(timer);
    },
  };
}

/** Number of points in `strokes`. */
export function countPoints(strokes) {
  return strokes.reduce((sum, stroke) => sum + stroke.length, 0);
}

/** The first `count` points of `strokes`, stroke by stroke (a timeline position). */
export function prefix(strokes, count) {
  const shown = [];
  let left = count;
  for (const stroke of strokes) {
    if (left <= 0) break;
    shown.push(stroke.slice(0, left));
    left -= stroke.length;
  }
  return shown;
}
