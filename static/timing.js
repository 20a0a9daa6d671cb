// Pointer event → heatmap painted, measured with the User Timing API
// (`performance.measure`, W3C User Timing Level 3): each batch of points is
// timed from its earliest pointer event to the render that paints a heatmap
// reflecting it. Read with performance.getEntriesByName(PAINT_MEASURE).

export const PAINT_MEASURE = "pointer-to-heatmap";

/** @returns {{input: Function, painted: Function, forget: Function}} */
export function createPaintTimer() {
  const waiting = new Map(); // seq of a stroke message → performance.now() time of its first pointer event
  return {
    input(seq, eventTimeMs) {
      waiting.set(seq, eventTimeMs);
    },
    painted(frameSeq) {
      // Called at the end of the render that drew the heatmap: the browser
      // paints right after this animation-frame callback.
      const now = performance.now();
      for (const [seq, start] of waiting) {
        if (seq > frameSeq) continue;
        performance.measure(PAINT_MEASURE, { start, end: now, detail: { seq } });
        waiting.delete(seq);
      }
    },
    forget() {
      // After a drop the lost messages get no frame; the replay is not a pointer event.
      waiting.clear();
    },
  };
}
