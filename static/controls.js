// The model, method and rule pickers, filled from the welcome message.

function percent(accuracy) {
  return typeof accuracy === "number" ? ` · ${(accuracy * 100).toFixed(1)} % correct` : "";
}

/** A model in words: a cnn by its kind (its channels are in the diagram), an MLP by its hidden width. */
function modelKind(model) {
  return model.family === "cnn" ? "Convolutional (LeNet)" : `${model.hidden} neurons`;
}

function fill(select, options, value) {
  select.replaceChildren(
    ...options.map(({ value: optionValue, label, title }) => {
      const option = document.createElement("option");
      option.value = optionValue;
      option.textContent = label;
      if (title) option.title = title;
      return option;
    }),
  );
  select.value = value;
}

/**
 * Fill the three pickers from a welcome and show the current config.
 * @param {{model: HTMLSelectElement, method: HTMLSelectElement, rule: HTMLSelectElement}} selects
 * @param {object} welcome  docs/protocol.md "welcome"
 * @param {{model: string, method: string, rule: string}} config
 */
export function fillControls(selects, welcome, config) {
  fill(selects.model, welcome.models.map((m) => ({ value: m.name, label: `${modelKind(m)}${percent(m.test_accuracy)}` })), config.model);
  fill(selects.method, welcome.methods.map((m) => ({ value: m.name, label: m.cost === "on-pause" ? `${m.label} · when you pause` : m.label })), config.method);
  fill(selects.rule, welcome.rules.map((r) => ({ value: r.name, label: r.label, title: r.description })), config.rule);
  showConfig(selects, welcome, config);
}

/** Reflect the config; rules only apply to LRP / CRP. */
export function showConfig(selects, welcome, config) {
  selects.model.value = config.model;
  selects.method.value = config.method;
  selects.rule.value = config.rule;
  selects.rule.disabled = config.method !== "lrp";
  const rule = welcome.rules.find((r) => r.name === config.rule);
  selects.rule.title = rule?.description ?? "";
}

/**
 * Call `onChange({key: value})` when a picker changes.
 * @param {{model: HTMLSelectElement, method: HTMLSelectElement, rule: HTMLSelectElement}} selects
 */
export function listenControls(selects, onChange) {
  for (const [key, select] of Object.entries(selects)) {
    select.addEventListener("change", () => onChange({ [key]: select.value }));
  }
}
