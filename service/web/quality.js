// The quality report of a finished edit, beside the result: one row per measure (its verdict and the
// line that says why) and the classifier's view of the output's expression over time, drawn as an SVG
// curve per class (the edit's target class drawn bold).

import { $, el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 480;
const HEIGHT = 120;

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

/** One polyline per class over the curve's points; `bold` is the target's class. */
export function drawCurve(box, emotion) {
  const points = emotion.curve;
  const end = Math.max(...points.map((p) => p.t_s), 1e-6);
  const lines = emotion.classes.map((name, k) => {
    const coordinates = points
      .map((p) => `${((p.t_s / end) * WIDTH).toFixed(1)},${(HEIGHT - p.output[k] * HEIGHT).toFixed(1)}`)
      .join(" ");
    const target = emotion.segments.some((s) => s.target_class === name);
    return svg("polyline", { points: coordinates, class: `curve curve-${name}${target ? " target" : ""}` }, svg("title", {}, name));
  });
  box.replaceChildren(
    svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": "The output's expression over time" }, ...lines),
    el("p", { class: "legend" }, ...emotion.classes.map((name) => el("span", { class: `key curve-${name}`, text: name }))),
  );
}

/** The report of `job` (or why there is none), or nothing when the edit was made without one. */
export function showQuality(job) {
  const report = job.result?.quality;
  const problem = job.result?.quality_error;
  $("quality").hidden = !report && !problem;
  $("quality-error").hidden = !problem;
  $("quality-error").textContent = problem ? `No quality report: ${problem.message} (${problem.code})` : "";
  $("quality-table").hidden = !report;
  $("quality-curve").hidden = !report;
  if (!report) return;
  const rows = ["identity", "lips", "steadiness", "emotion", "faces"].map((name) =>
    el("tr", { class: `verdict-${report[name].verdict}` }, el("th", { scope: "row", text: name }), el("td", { text: report[name].verdict }), el("td", { text: report[name].line })),
  );
  $("quality-rows").replaceChildren(...rows);
  $("quality-note").textContent = report.emotion.classifier;
  drawCurve($("quality-curve"), report.emotion);
}
