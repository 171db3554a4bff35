// Several faces: every face of the probed first frame is a button over the video; clicking one gives it a
// target (an emotion and an intensity) in the list below. With any face chosen, the edit is a several-face
// edit (`faces` in the body, each entry `{select: index from the left, emotion, intensity}`) and the
// emotion step's own target is not used.

import { $, el } from "./dom.js";

export class FacesStep {
  /** `video`: the video step (its probe and element); `emotions()`: the usable emotions; `onChange`: any change. */
  constructor(video, emotions, onChange) {
    this.video = video;
    this.emotions = emotions;
    this.onChange = onChange;
    this.chosen = new Map(); // face index -> its row's controls
    $("input-video").addEventListener("loadedmetadata", () => this.draw());
    window.addEventListener("resize", () => this.draw());
  }

  /** The probe's faces (each x0, y0, x1, y1), from the left. */
  boxes() {
    return this.video.probe?.faces || [];
  }

  count() {
    return this.chosen.size;
  }

  clear() {
    this.chosen.clear();
    $("faces-list").replaceChildren();
    $("faces-panel").hidden = true;
  }

  /** A button over each face of the shown frame (the video is letterboxed in its element). */
  draw() {
    const layer = $("face-picks");
    const probe = this.video.probe;
    const video = $("input-video");
    layer.replaceChildren();
    if (!probe || $("video-stage").hidden || !video.videoWidth || this.boxes().length < 2) return;
    const scale = Math.min(video.clientWidth / probe.width, video.clientHeight / probe.height);
    const left = (video.clientWidth - probe.width * scale) / 2 + video.offsetLeft;
    const top = (video.clientHeight - probe.height * scale) / 2 + video.offsetTop;
    this.boxes().forEach(([x0, y0, x1, y1], index) => {
      const pick = el("button", {
        type: "button",
        class: `face-pick${this.chosen.has(index) ? " chosen" : ""}`,
        "aria-label": `Face ${index + 1} from the left`,
        "aria-pressed": String(this.chosen.has(index)),
        onclick: () => this.choose(index),
      });
      pick.style.left = `${left + x0 * scale}px`;
      pick.style.top = `${top + y0 * scale}px`;
      pick.style.width = `${(x1 - x0) * scale}px`;
      pick.style.height = `${(y1 - y0) * scale}px`;
      layer.append(pick);
    });
  }

  /** Give face `index` a target (or focus its row if it has one). */
  choose(index) {
    if (!this.chosen.has(index)) {
      const names = this.emotions().map((e) => e.name);
      const emotion = el("select", { id: `face-${index}-emotion`, "aria-label": `Emotion of face ${index + 1}` },
        ...names.map((name) => el("option", { value: name, text: name })));
      const intensity = el("input", { id: `face-${index}-intensity`, type: "number", min: "0", max: "2", step: "0.05", value: "1",
        "aria-label": `Intensity of face ${index + 1}` });
      const row = el("li", { class: "row" }, el("span", { text: `Face ${index + 1}` }), emotion, intensity,
        el("button", { type: "button", text: "Remove", onclick: () => this.remove(index) }));
      this.chosen.set(index, { row, emotion, intensity });
      const rows = [...this.chosen.entries()].sort(([a], [b]) => a - b).map(([, r]) => r.row);
      $("faces-list").replaceChildren(...rows);
      $("faces-panel").hidden = false;
    }
    this.chosen.get(index).emotion.focus();
    this.draw();
    this.onChange();
  }

  remove(index) {
    this.chosen.get(index)?.row.remove();
    this.chosen.delete(index);
    $("faces-panel").hidden = !this.chosen.size;
    this.draw();
    this.onChange();
  }

  /** The edit's `faces` field, or {} when no face was chosen. */
  fields() {
    if (!this.chosen.size) return {};
    const faces = [...this.chosen.entries()]
      .sort(([a], [b]) => a - b)
      .map(([select, r]) => ({ select, emotion: r.emotion.value, intensity: Number(r.intensity.value) }));
    return { faces };
  }
}
