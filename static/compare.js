// The comparison view: one small map per method for the same drawing and
// class (a `comparison` message), each labelled with its name and cost.

import { paintRelevance } from "./heatmap.js";

/** Why a cost class matters to a visitor. */
const COST_WORDS = { "per-frame": "live, every frame", "on-pause": "slow: runs when you pause" };

/**
 * Draw the small multiples of a comparison.
 * @param {HTMLElement} grid
 * @param {object} comparison  decoded (arrays.decodeComparison)
 */
export function renderComparison(grid, comparison) {
  grid.replaceChildren(
    ...comparison.maps.map((map) => {
      const box = document.createElement("figure");
      box.className = "compare-map";
      box.dataset.method = map.method;
      const canvas = document.createElement("canvas");
      canvas.className = "pixelated";
      if (map.heatmap) paintRelevance(canvas, map.heatmap);
      const caption = document.createElement("figcaption");
      const name = document.createElement("strong");
      // An unsigned map (sensitivity) is all red: say so, or it reads as evidence for the class.
      name.textContent = map.signed === false ? `${map.label} (sensitivity, not for/against)` : map.label;
      const cost = document.createElement("span");
      cost.className = `cost ${map.cost}`;
      cost.textContent = `${COST_WORDS[map.cost] ?? map.cost} · ${map.compute_ms.toFixed(1)} ms`;
      caption.append(name, cost);
      box.append(canvas, caption);
      return box;
    }),
  );
}
