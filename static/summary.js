// Words for what the page shows: the heatmap title, the legend ends and a
// one-sentence reading of the frame. Pure: frame and selection in, strings out.

/** "a 4", "an 8": the article English puts before a spoken digit. */
function digitPhrase(digit) {
  return digit === 8 ? `an 8` : `a ${digit}`;
}

/** "92 %" with a no-break space, so the number and its sign never part at a line end. */
function percent(probability) {
  return `${Math.round(probability * 100)}\u00a0%`;
}

/** Label of a method name, from welcome.methods. */
export function methodLabel(welcome, name) {
  return welcome?.methods.find((method) => method.name === name)?.label ?? name;
}

/** Whether a method's maps hold evidence for and against (else magnitudes only: sensitivity). */
export function isSigned(welcome, name) {
  return welcome?.methods.find((method) => method.name === name)?.signed ?? true;
}

/**
 * The heatmap title in plain words, e.g. "What hidden neuron 17 adds to '4'"; the researcher's term
 * for the method is one tap away (`heatmapTerm`).
 * @param {object} frame  the frame shown
 * @param {object} welcome
 * @returns {string}
 */
export function heatmapTitle(frame, welcome) {
  const target = `'${frame.target}'`;
  switch (frame.mode) {
    case "contrast":
      return frame.hidden === null
        ? `Why ${target} and not '${frame.versus}'`
        : `Why ${target} and not '${frame.versus}', through hidden neuron ${frame.hidden}`;
    case "crp":
      return frame.layer
        ? `What ${frame.layer} channel ${frame.hidden} adds to ${target}`
        : `What hidden neuron ${frame.hidden} adds to ${target}`;
    case "hidden":
      return `Hidden neuron ${frame.hidden} alone: what it responds to`;
    case "attribution":
      return isSigned(welcome, frame.method) ? `Evidence for ${target}` : `Where the score for ${target} is most sensitive`;
    default:
      return frame.output === null || frame.output === frame.prediction
        ? `Why the network reads ${target}`
        : `What speaks for and against ${target}`;
  }
}

/** What each method's term means, for the researcher (the title says it in plain words). */
const METHOD_TERMS = {
  saliency: "the size of the gradient of the class score (logit) with respect to each pixel, |∂y/∂x|: "
    + "where a small change would move the score most, whatever the ink (Simonyan et al. 2014).",
  gradient_x_input: "the gradient of the class score times the pixel; on this network the same map as LRP-ε.",
  integrated_gradients: "Gradient × Input averaged along the straight path from a blank pad to the drawing; "
    + "the map sums to score(drawing) − score(blank) (Sundararajan et al. 2017).",
  smoothgrad: "Saliency averaged over noisy copies of the drawing, which smooths the gradient's noise (Smilkov et al. 2017).",
  occlusion: "how much the class score drops when a small patch is blacked out, slid over the image (Zeiler & Fergus 2014).",
  lime: "a sparse linear model fitted to the network's answers on random subsets of the inked superpixels (Ribeiro et al. 2016).",
  kernel_shap: "Shapley values of the inked superpixels, estimated from random coalitions (Lundberg & Lee 2017).",
  gradcam: "a conv layer's channels weighted by their mean gradient, summed and kept where positive, at the layer's "
    + "coarse resolution (Selvaraju et al. 2017).",
  hirescam: "Grad-CAM without the averaging: each position's activation times its own gradient (Draelos & Carin 2020).",
  ink: "a control that knows nothing of the network: the drawing itself. A method whose maps look just like it may "
    + "show the input rather than the model.",
};

/**
 * The researcher's term for what the heatmap shows, and what it means, e.g.
 * {term: "CRP", text: "Concept Relevance Propagation (Achtibat et al. 2023): …"}.
 * @param {object} frame
 * @param {object} welcome
 * @returns {{term: string, text: string}}
 */
export function heatmapTerm(frame, welcome) {
  const lrp = "Layer-wise Relevance Propagation (Bach et al. 2015): the class score (logit) is handed back "
    + "through the network layer by layer, under the chosen rule, until every pixel holds its share. "
    + "Red: relevance for the class, blue: against; the shares add up to the score.";
  switch (frame.mode) {
    case "contrast":
      return { term: "LRP contrast", text: `A contrastive LRP map: the relevance of the score difference `
        + `z(${frame.target}) − z(${frame.versus}), so red speaks for ${frame.target} over ${frame.versus} `
        + `and blue for ${frame.versus} over ${frame.target}. LRP: ${lrp}` };
    case "crp":
      return { term: "CRP", text: "Concept Relevance Propagation (Achtibat et al. 2023): LRP passed through "
        + `one ${frame.layer ? "channel" : "hidden neuron"} only, the part of the drawing it used for the class. LRP: ${lrp}` };
    case "hidden":
      return { term: "LRP", text: "LRP started at the hidden neuron's own input (its pre-activation) instead of an "
        + `output: what drives the neuron, whatever the class. LRP: ${lrp}` };
    case "attribution": {
      const label = methodLabel(welcome, frame.method);
      return { term: label, text: `${label}: ${METHOD_TERMS[frame.method] ?? "an attribution method from captum."}` };
    }
    default:
      return { term: "LRP", text: `LRP, ${lrp}` };
  }
}

/** Words under the blue and red ends of the legend (an unsigned map has no blue end). */
export function legendWords(frame, welcome) {
  if (frame.mode === "hidden") return [`holds neuron ${frame.hidden} back`, `makes neuron ${frame.hidden} fire`];
  if (frame.mode === "contrast") return [`for '${frame.versus}' over '${frame.target}'`, `for '${frame.target}' over '${frame.versus}'`];
  if (frame.mode === "attribution" && !isSigned(welcome, frame.method)) return ["", "more sensitive"];
  return [`against '${frame.target}'`, `for '${frame.target}'`];
}

/** The two most probable classes, most probable first. */
function topTwo(probabilities) {
  const order = [...probabilities.keys()].sort((a, b) => probabilities[b] - probabilities[a]);
  return order.slice(0, 2);
}

/**
 * What hidden neuron `frame.hidden` adds to class `frame.target`, as its share
 * of all the hidden layer's supporting relevance (hidden_relevance > 0).
 */
function hiddenShare(frame) {
  const j = frame.hidden;
  const relevance = frame.hidden_relevance;
  const support = relevance.reduce((sum, r) => sum + Math.max(r, 0), 0);
  const rank = 1 + relevance.filter((r) => r > relevance[j]).length;
  if (relevance[j] > 0 && support > 0) {
    // The server's share (docs/protocol.md, neuron_share): the same number as the legend's.
    const share = frame.neuron_share ?? relevance[j] / support;
    const percent = share < 0.01 ? "<\u00a01" : String(Math.round(100 * share));
    return `Hidden neuron ${j} carries ${percent}\u00a0% of the relevance reaching the hidden layer for ${frame.target} (rank ${rank} of ${relevance.length}); red pixels are where it found evidence, blue pixels argued against.`;
  }
  if (relevance[j] < 0) {
    return `Hidden neuron ${j} argues against ${frame.target}; red pixels are where it still found evidence for ${frame.target}, blue pixels are what it holds against it.`;
  }
  if (frame.knockout?.includes(j)) return `Hidden neuron ${j} is switched off: it adds nothing to ${frame.target}.`;
  return `Hidden neuron ${j} adds nothing to ${frame.target} for this drawing: it is silent or does not feed ${frame.target}.`;
}

/** What channel `frame.hidden` of conv layer `frame.layer` adds to class `frame.target` (frame.channels). */
function channelShare(frame) {
  const k = frame.hidden;
  const name = `Channel ${k} of ${frame.layer}`;
  const relevance = frame.channels[frame.layer].relevance;
  const support = relevance.reduce((sum, r) => sum + Math.max(r, 0), 0);
  const rank = 1 + relevance.filter((r) => r > relevance[k]).length;
  if (relevance[k] > 0 && support > 0) {
    const share = relevance[k] / support;
    const percent = share < 0.01 ? "<\u00a01" : String(Math.round(100 * share));
    return `${name} carries ${percent}\u00a0% of the relevance reaching ${frame.layer} for ${frame.target} (rank ${rank} of ${relevance.length}); red pixels are where it found evidence, blue pixels argued against.`;
  }
  if (relevance[k] < 0) return `${name} argues against ${frame.target}; red pixels are where it still found evidence, blue pixels are what it holds against it.`;
  return `${name} adds nothing to ${frame.target} for this drawing: it is silent here or does not feed ${frame.target}.`;
}

function readingSentence(frame) {
  const [first, second] = topTwo(frame.probabilities);
  const p = frame.probabilities;
  if (p[first] < 0.5) {
    return `The network is unsure: ${digitPhrase(first)} (${percent(p[first])}) or ${digitPhrase(second)} (${percent(p[second])}).`;
  }
  return `The network reads ${digitPhrase(first)} (${percent(p[first])}).`;
}

/**
 * One or two plain sentences for the visitor, e.g. "The network reads a 4
 * (92 %). Red pixels pushed it toward 4; blue pixels pushed it away."
 * @param {object} frame
 * @param {boolean} empty  nothing drawn yet
 * @param {object} welcome
 * @returns {string}
 */
export function summarize(frame, empty, welcome) {
  if (empty) return "Draw a digit from 0 to 9 in the box. The network reads it while you draw.";
  const reading = readingSentence(frame);
  const t = frame.target;
  if (frame.mode === "crp") return `${reading} ${frame.layer ? channelShare(frame) : hiddenShare(frame)}`;
  if (frame.mode === "contrast") {
    const margin = frame.logits[t] - frame.logits[frame.versus];
    const lead = margin >= 0 ? `it scores ${t} ${margin.toFixed(1)} above ${frame.versus}` : `it scores ${frame.versus} ${(-margin).toFixed(1)} above ${t}`;
    return `${reading} Why ${t} and not ${frame.versus}: ${lead}. Red pixels speak for ${t} over ${frame.versus}; blue pixels for ${frame.versus} over ${t}.`;
  }
  if (frame.mode === "hidden") {
    const activation = frame.activations[frame.hidden];
    if (frame.knockout?.includes(frame.hidden)) {
      return `${reading} Hidden neuron ${frame.hidden} is switched off: it passes nothing on; the map shows what in the drawing drives its input (red toward firing, blue away).`;
    }
    if (activation <= 0) return `${reading} Hidden neuron ${frame.hidden} is silent for this drawing: red pixels push it toward firing, blue pixels keep it off, and blue wins.`;
    return `${reading} Hidden neuron ${frame.hidden} fires at ${activation.toFixed(2)}; red pixels made it fire, blue pixels held it back.`;
  }
  if (frame.pending) return `${reading} This method runs when you pause drawing.`;
  if (frame.mode === "attribution" && !isSigned(welcome, frame.method)) {
    return `${reading} Red pixels are where a small change would move the score for ${t} most; this method does not say whether they speak for or against it.`;
  }
  if (t !== frame.prediction) return `${reading} Red pixels speak for ${t}; blue pixels speak against it.`;
  return `${reading} Red pixels pushed it toward ${t}; blue pixels pushed it away.`;
}
