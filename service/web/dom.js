// Small DOM helpers shared by the page's modules.

export const $ = (id) => document.getElementById(id);

/** An element with properties (`text`, `class`, attributes) and children. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

/** Show `error` (an ApiError or any Error) in an alert paragraph, with the API's code. */
export function showError(node, error) {
  if (!error) {
    node.hidden = true;
    node.textContent = "";
    return;
  }
  node.hidden = false;
  node.textContent = error.code ? `${error.message} (${error.code})` : error.message;
}

/** Enable `button`, or disable it saying why: the reason shows beside it (`<id>-why`) and is its description. */
export function enable(button, reason) {
  button.disabled = Boolean(reason);
  const why = $(`${button.id}-why`);
  why.textContent = reason || "";
  why.hidden = !reason;
}

export function seconds(value) {
  return `${value.toFixed(2)} s`;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

/** What an edit is driven by, in a word or two (its emotion, "timeline", the faces' emotions or "speech"). */
export function target(job) {
  if (job.timeline) return `timeline of ${job.timeline.segments.length}`;
  if (job.faces) return job.faces.map((f) => `${typeof f.select === "number" ? `face ${f.select + 1}` : f.select === "speaker" ? "speaker" : "face box"}: ${f.emotion}`).join(", ");
  return job.emotion || "speech";
}
