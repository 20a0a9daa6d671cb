// Kiosk mode (`/?kiosk`, `&idle=<seconds>`, default 60): after the idle time
// the page returns to its start state and plays the attract loop; any touch,
// click or key ends it. main.js does the resetting and the playing; this
// module reads the settings and watches for a visitor.

export const DEFAULT_IDLE_S = 60;

/**
 * Kiosk settings from the query string, or null when the page is not a kiosk.
 * @param {string} search  location.search
 * @returns {{idleMs: number}|null}
 */
export function kioskSettings(search) {
  const params = new URLSearchParams(search);
  if (!params.has("kiosk")) return null;
  const idle = Number(params.get("idle") ?? DEFAULT_IDLE_S);
  return { idleMs: (Number.isFinite(idle) && idle > 0 ? idle : DEFAULT_IDLE_S) * 1000 };
}

/**
 * Watch the page for a visitor.
 * @param {{idleMs: number}} settings
 * @param {{onIdle: () => void, onVisitor: () => void}} handlers
 *   onIdle: nobody touched the page for idleMs (or since it opened); onVisitor: the first touch,
 *   click or key after onIdle, before any handler of the page sees it (capture phase)
 */
export function watchVisitors({ idleMs }, { onIdle, onVisitor }) {
  let timer = null;
  let idle = false;

  function arm() {
    clearTimeout(timer);
    timer = setTimeout(() => {
      idle = true;
      onIdle();
    }, idleMs);
  }

  function activity(event) {
    if (event.type === "pointermove" && event.buttons === 0) return; // a pen drawing, not a hover
    if (idle) {
      idle = false;
      onVisitor();
    }
    arm();
  }

  for (const type of ["pointerdown", "pointermove", "keydown", "wheel"]) {
    document.addEventListener(type, activity, { capture: true, passive: true });
  }
  arm();
}
