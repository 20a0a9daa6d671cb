// Colour maps: pure functions from numbers to sRGB bytes. No DOM.
//
// Relevance uses ColorBrewer's 11-class RdBu (Brewer, Harrower & Woodruff,
// colorbrewer2.org), which ColorBrewer marks "colorblind safe": its two arms
// differ in lightness as well as hue, so they stay apart under deuteranopia,
// protanopia and tritanopia, and it is symmetric around a near-white zero.
// Red = evidence for the explained class, blue = evidence against.

/** RdBu anchors from v = -1 (dark blue) through 0 (near white) to +1 (dark red). */
export const RDBU = [
  "#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
  "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f",
];

/** Sequential "ink" ramp for activations and probabilities: paper white → slate. */
export const INK = ["#ffffff", "#cbd5e1", "#64748b", "#1e293b"];

function hexToRgb(hex) {
  const n = Number.parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

const RDBU_RGB = RDBU.map(hexToRgb);
const INK_RGB = INK.map(hexToRgb);

/** Piecewise-linear interpolation between evenly spaced anchors, t in [0, 1]. */
function interpolate(anchors, t) {
  const clamped = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0));
  const position = clamped * (anchors.length - 1);
  const low = Math.min(Math.floor(position), anchors.length - 2);
  const frac = position - low;
  const [a, b] = [anchors[low], anchors[low + 1]];
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * frac));
}

/**
 * Diverging colour of a signed value already scaled to [-1, 1] (values
 * outside are clamped; NaN is treated as 0).
 * @param {number} v  relevance / max|relevance|
 * @returns {number[]} [r, g, b], bytes 0–255
 */
export function diverging(v) {
  return interpolate(RDBU_RGB, (v + 1) / 2);
}

/**
 * Sequential colour of a magnitude in [0, 1] (0 = white paper, 1 = dark ink).
 * @param {number} t
 * @returns {number[]} [r, g, b], bytes 0–255
 */
export function sequential(t) {
  return interpolate(INK_RGB, t);
}

/** CSS `rgb()` string of an [r, g, b] triple. */
export function css([r, g, b]) {
  return `rgb(${r} ${g} ${b})`;
}

/** Whether dark text is legible on this background (WCAG relative luminance). */
export function prefersDarkText([r, g, b]) {
  const linear = [r, g, b].map((c) => {
    const s = c / 255;
    return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  const luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2];
  // Contrast with black (L+0.05)/0.05 vs with white 1.05/(L+0.05) cross at L ≈ 0.179.
  return luminance > 0.179;
}

/** CSS linear-gradient of the diverging map, negative on the left. */
export function divergingGradient() {
  const stops = RDBU.map((hex, i) => `${hex} ${((i / (RDBU.length - 1)) * 100).toFixed(1)}%`);
  return `linear-gradient(to right, ${stops.join(", ")})`;
}
