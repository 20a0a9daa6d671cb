// The timeline scrubber: replays the drawing point by point from its first
// point to its last, the prediction and heatmap following, so a visitor sees
// where the reading flipped. It lies over the foot of the pad while open;
// drawing on the pad closes it, keeping what it showed.

import { countPoints } from "./playback.js";

/** Points the ▶ button advances per animation frame. */
const PLAY_POINTS_PER_FRAME = 1;

/** Words for a position, e.g. "stroke 2 of 3, point 14 of 52". */
export function positionText(recording, position) {
  let left = position;
  for (const [k, points] of recording.entries()) {
    if (left <= points.length) return `stroke ${k + 1} of ${recording.length}, point ${position} of ${countPoints(recording)}`;
    left -= points.length;
  }
  return `point ${position} of ${countPoints(recording)}`;
}

/**
 * Wire the timeline's controls.
 * @param {{box: HTMLElement, range: HTMLInputElement, play: HTMLButtonElement, close: HTMLButtonElement,
 *          open: HTMLButtonElement, label: HTMLElement}} elements
 * @param {{onOpen: () => void, onPosition: (position: number) => void, onClose: () => void}} handlers
 * @returns {{render: (timeline: object|null, hasInk: boolean) => void}}
 */
export function createTimeline(elements, { onOpen, onPosition, onClose }) {
  let frame = null;

  function stop() {
    if (frame !== null) cancelAnimationFrame(frame);
    frame = null;
  }

  function advance() {
    const next = Number(elements.range.value) + PLAY_POINTS_PER_FRAME;
    const end = Number(elements.range.max);
    onPosition(Math.min(next, end));
    frame = next < end ? requestAnimationFrame(advance) : null;
  }

  elements.open.addEventListener("click", onOpen);
  elements.range.addEventListener("input", () => {
    stop();
    onPosition(Number(elements.range.value));
  });
  elements.play.addEventListener("click", () => {
    stop();
    if (Number(elements.range.value) >= Number(elements.range.max)) onPosition(0);
    frame = requestAnimationFrame(advance);
  });
  elements.close.addEventListener("click", () => {
    stop();
    onClose();
  });

  return {
    render(timeline, hasInk) {
      elements.open.disabled = !hasInk && !timeline;
      elements.box.hidden = !timeline;
      if (!timeline) {
        stop();
        return;
      }
      const total = countPoints(timeline.recording);
      elements.range.max = String(total);
      elements.range.value = String(timeline.position);
      const text = positionText(timeline.recording, timeline.position);
      elements.range.setAttribute("aria-valuetext", text);
      elements.label.textContent = text;
    },
  };
}
