// The first minute: on arrival, example digits draw themselves on the pad,
// the network answering live, until the visitor's first touch, click or key
// (issue 26, "A first minute that teaches"). This module decides whether they
// play and watches for that first touch; main.js draws them (playback.js).

/** Examples drawn on arrival at most: an unattended tab then stops costing the server frames. */
export const ARRIVAL_EXAMPLES = 4;
/** The rest between two examples on arrival, ms (shorter than the kiosk's attract loop, 2,500 ms). */
export const ARRIVAL_PAUSE_MS = 1200;

/**
 * Whether examples draw themselves on arrival.
 * @param {{kiosk: boolean, opened: boolean, reducedMotion: boolean}} page
 *   kiosk: its own attract loop plays; opened: the page opened a drawing (a share link), which it
 *   shows instead; reducedMotion: the visitor asked for no motion (`prefers-reduced-motion`,
 *   WCAG 2.2 SC 2.2.2), the Example button still draws one on request
 * @returns {boolean}
 */
export function playsOnArrival({ kiosk, opened, reducedMotion }) {
  return !kiosk && !opened && !reducedMotion;
}

/**
 * Call `onTouch(event)` once, at the page's first pointer press or key, before any handler of the
 * page sees it (capture phase, as kiosk.js watches for a visitor).
 * @param {(event: Event) => void} onTouch
 */
export function watchFirstTouch(onTouch) {
  const types = ["pointerdown", "keydown"];
  function first(event) {
    for (const type of types) document.removeEventListener(type, first, { capture: true });
    onTouch(event);
  }
  for (const type of types) document.addEventListener(type, first, { capture: true, passive: true });
}
