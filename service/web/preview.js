// "See before paying": a contact sheet of one frame under several emotions x intensities, each cell
// a button that picks its emotion and intensity for the edit; and a clip preview of a few seconds.
// Both are preview jobs, followed by reading `GET /v1/previews/{id}` until they end.

import { api } from "./api.js";
import { $, el, enable, showError } from "./dom.js";

const FINAL = new Set(["succeeded", "failed", "canceled"]);
const POLL_MS = 500;
const MAX_ROWS = 8;
const MAX_COLUMNS = 6;

/** The preview `id` until it ends, `show` called with each reading. */
async function follow(id, show) {
  let preview = await api(`/v1/previews/${id}`);
  show(preview);
  while (!FINAL.has(preview.state)) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    preview = await api(`/v1/previews/${id}`);
    show(preview);
  }
  if (preview.error) throw Object.assign(new Error(preview.error.message), { code: preview.error.code });
  return preview;
}

function line(preview) {
  return `${preview.state}${preview.stage ? `, ${preview.stage}` : ""} (${Math.round(preview.progress * 100)} %)`;
}

export class PreviewStep {
  /** `video`: the VideoStep; `emotion`: the EmotionStep; `options`: the OptionsStep. */
  constructor({ video, emotion, options }) {
    this.video = video;
    this.emotion = emotion;
    this.options = options;
    $("make-sheet").addEventListener("click", () => this.sheet());
    $("make-clip").addEventListener("click", () => this.clip());
    $("clip-here").addEventListener("click", () => {
      $("clip-start").value = String(Math.round($("input-video").currentTime * 10) / 10);
    });
    $("sheet-emotions").addEventListener("change", () => this.update());
    $("sheet-intensities").addEventListener("input", () => this.update());
  }

  /** The emotions to choose rows from (after the key's emotions are known). */
  load() {
    const checked = new Set(this.rows());
    $("sheet-emotions").replaceChildren(
      ...this.emotion.usable().map((e) => {
        const id = `sheet-${e.id}`;
        const box = el("input", { type: "checkbox", id, value: e.id, checked: checked.has(e.id) });
        return el("label", { class: `chip ${e.kind}`, for: id }, box, el("span", { text: e.name }));
      }),
    );
    $("preview-panel").hidden = false;
    this.update();
  }

  rows() {
    return [...document.querySelectorAll("#sheet-emotions input:checked")].map((b) => b.value);
  }

  columns() {
    const values = $("sheet-intensities").value.split(/[ ,]+/).filter(Boolean).map(Number);
    return values.length && values.every((v) => v >= 0 && v <= 2) ? values : null;
  }

  update() {
    if (this.shownFor !== this.video.asset) {
      // a sheet or clip of another video is no preview of this one
      this.shownFor = this.video.asset;
      $("sheet").hidden = true;
      $("clip-video").hidden = true;
      for (const id of ["sheet-status", "clip-status"]) $(id).textContent = "";
    }
    const rows = this.rows().length;
    const columns = this.columns();
    const sheetWhy =
      this.video.missing() ||
      (!rows ? "Tick the emotions of its rows." : "") ||
      (rows > MAX_ROWS ? `At most ${MAX_ROWS} emotions.` : "") ||
      (!columns ? "Give intensities from 0 to 2, separated by commas." : "") ||
      (columns.length > MAX_COLUMNS ? `At most ${MAX_COLUMNS} intensities.` : "");
    enable($("make-sheet"), sheetWhy);
    enable($("make-clip"), this.video.missing() || this.emotion.missing());
  }

  async sheet() {
    const status = $("sheet-status");
    showError($("sheet-error"), null);
    $("sheet").hidden = true;
    $("make-sheet").disabled = true;
    const frame = $("sheet-frame").value;
    const body = {
      video_asset: this.video.asset,
      emotions: this.rows(),
      intensities: this.columns(),
      ...(frame === "" ? {} : { frame: Number(frame) }),
      ...this.options.enhance(),
    };
    status.textContent = "Sending the contact sheet…";
    try {
      const made = await api("/v1/previews", { method: "POST", json: body, headers: { "Idempotency-Key": crypto.randomUUID() } });
      const done = await follow(made.id, (p) => (status.textContent = `Contact sheet ${p.id}: ${line(p)}`));
      this.showSheet(done);
      status.textContent = `Contact sheet of frame ${done.frame}: ${done.cells.length} cells.`;
    } catch (error) {
      status.textContent = "";
      showError($("sheet-error"), error);
    } finally {
      this.update();
    }
  }

  showSheet(preview) {
    const names = new Map(this.emotion.emotions.map((e) => [e.id, e.name]));
    const cells = $("sheet-cells");
    cells.style.setProperty("--columns", String(preview.intensities.length));
    cells.replaceChildren(
      el("span"),
      ...preview.intensities.map((i) => el("span", { class: "head", text: i.toFixed(2) })),
    );
    preview.emotions.forEach((row, r) => {
      const name = names.get(row) || row;
      cells.append(el("span", { class: "head", text: name }));
      preview.intensities.forEach((intensity, c) => {
        const cell = preview.cells[r * preview.intensities.length + c];
        const label = `${name} at ${intensity.toFixed(2)}`;
        cells.append(
          el(
            "button",
            { type: "button", class: "cell", "aria-label": `Use ${label}`, onclick: () => this.pickCell(row, intensity, label) },
            el("img", { src: cell.url, alt: label }),
          ),
        );
      });
    });
    $("sheet-image").src = preview.sheet_url;
    $("sheet").hidden = false;
  }

  pickCell(emotion, intensity, label) {
    this.emotion.pick(emotion, intensity);
    $("sheet-status").textContent = `Picked ${label} for the edit.`;
  }

  async clip() {
    const status = $("clip-status");
    showError($("clip-error"), null);
    $("make-clip").disabled = true;
    const player = $("clip-video");
    player.hidden = true;
    status.textContent = "Sending the clip preview…";
    try {
      const body = {
        video_asset: this.video.asset,
        ...(await this.emotion.fields()),
        ...(await this.options.fields()),
        preview_s: Number($("clip-length").value),
        preview_start_s: Number($("clip-start").value),
      };
      const made = await api("/v1/edits", { method: "POST", json: body, headers: { "Idempotency-Key": crypto.randomUUID() } });
      const done = await follow(made.id, (p) => (status.textContent = `Clip preview ${p.id}: ${line(p)}`));
      player.src = done.output_url;
      player.hidden = false;
      status.textContent = `Clip preview: ${done.result.duration_s.toFixed(2)} s from ${done.preview_start_s.toFixed(2)} s.`;
    } catch (error) {
      status.textContent = "";
      showError($("clip-error"), error);
    } finally {
      this.update();
    }
  }
}
