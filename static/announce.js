// What a screen reader hears: one polite live region, written only once the
// reading has settled (nothing new for `settleMs`), and only when its words
// changed. Frames arrive up to 60 times a second while the pen moves; every
// other region on the page stays silent (WCAG 2.2 SC 4.1.3, "Status Messages",
// without the chatter).

/**
 * @param {HTMLElement} region  an element with aria-live="polite"
 * @param {number} settleMs     quiet time before announcing
 * @returns {{say: (text: string) => void}}  say: the words now on screen, at every render (announced
 *   once nothing has rendered for settleMs)
 */
export function createAnnouncer(region, settleMs = 900) {
  let timer = null;
  let pending = "";
  return {
    say(text) {
      // Every call (a frame, the pen moving) restarts the wait: the reading settles only when both rest.
      pending = text;
      clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        if (region.textContent !== pending) region.textContent = pending;
      }, settleMs);
    },
  };
}
