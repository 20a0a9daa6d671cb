// The comparison view: one small map per method for the same drawing and
// class (a `comparison` message), each labelled with its name, cost, what it
// computes with its parameters (welcome.methods[].description) and the colour
// scale it is painted at: its own, or one shared by every map.

import { formatNumber, paintRelevance } from "./heatmap.js";

/** Why a cost class matters to a visitor. */
const COST_WORDS = { "per-frame": "live, every frame", "on-pause": "slow: runs when you pause" };

/** Largest |value| of a map's heatmap (0 for none or an empty map). */
function maxAbs(map) {
  return map.heatmap ? map.heatmap.values.reduce((max, v) => Math.max(max, Math.abs(v)), 0) : 0;
}

/**
 * The scale each map is painted at: its own largest |value|, or with `shared` the largest of every map
 * (an unsigned map, a magnitude, is on its own either way: its units are not the others').
 * @param {object[]} maps  comparison.maps, decoded
 * @param {boolean} shared
 * @returns {number[]} one scale per map, 0 for an empty map
 */
export function comparisonScales(maps, shared) {
  const own = maps.map(maxAbs);
  const common = Math.max(0, ...maps.map((map, k) => (map.signed === false ? 0 : own[k])));
  return maps.map((map, k) => (shared && map.signed !== false ? common : own[k]));
}

/**
 * Draw the small multiples of a comparison.
 * @param {HTMLElement} grid
 * @param {object} comparison  decoded (arrays.decodeComparison)
 * @param {{shared: boolean, welcome: object|null}} options  shared: one colour scale for the signed maps;
 *   welcome: its methods' descriptions are printed under each map
 */
export function renderComparison(grid, comparison, { shared = false, welcome = null } = {}) {
  const scales = comparisonScales(comparison.maps, shared);
  grid.replaceChildren(
    ...comparison.maps.map((map, k) => {
      const box = document.createElement("figure");
      box.className = "compare-map";
      box.dataset.method = map.method;
      const canvas = document.createElement("canvas");
      canvas.className = "pixelated";
      if (map.heatmap) paintRelevance(canvas, map.heatmap, null, scales[k] || null);
      const caption = document.createElement("figcaption");
      const name = document.createElement("strong");
      // An unsigned map (sensitivity) is all red: say so, or it reads as evidence for the class.
      name.textContent = map.signed === false ? `${map.label} (sensitivity, not for/against)` : map.label;
      const cost = document.createElement("span");
      cost.className = `cost ${map.cost}`;
      cost.textContent = `${COST_WORDS[map.cost] ?? map.cost} · ${map.compute_ms.toFixed(1)} ms`;
      const scale = document.createElement("span");
      scale.className = "compare-scale";
      scale.textContent = !scales[k] ? "empty map"
        : map.signed === false ? `scale 0 … ${formatNumber(scales[k])}` : `scale ±${formatNumber(scales[k])}`;
      const about = document.createElement("span");
      about.className = "compare-about";
      about.textContent = welcome?.methods.find((method) => method.name === map.method)?.description ?? "";
      caption.append(name, cost, scale, about);
      box.append(canvas, caption);
      return box;
    }),
  );
}
