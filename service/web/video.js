// Step 1: the video. A file goes up through a presigned upload with a progress bar; then the API's
// probe gives its length, fps, size and the face the edit would take, drawn as a box over the frame.

import { api, ApiError, upload } from "./api.js";
import { $, el, seconds, showError } from "./dom.js";

const PROBE_WAIT_MS = 120000;

export class VideoStep {
  /** `onFail`: an upload or its check failed (the page forgets what was made for the old video). */
  constructor(onChange, onFail = () => {}) {
    this.onChange = onChange;
    this.onFail = onFail;
    this.uploading = false;
    this.asset = null;
    this.turn = 0;
    this.ready = false;
    this.localUrl = null;
    this.probe = null;
    $("video-file").addEventListener("change", (e) => e.target.files[0] && this.choose(e.target.files[0]));
    $("recent").addEventListener("change", (e) => e.target.value && this.pick(e.target.value));
    const drop = $("drop");
    drop.addEventListener("dragover", (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer.files[0]) this.choose(e.dataTransfer.files[0]);
    });
    $("input-video").addEventListener("loadedmetadata", () => this.drawFace());
    window.addEventListener("resize", () => this.drawFace());
  }

  async loadRecent() {
    const select = $("recent");
    try {
      const list = await api("/v1/uploads?limit=20");
      select.replaceChildren(el("option", { value: "", text: "none chosen" }));
      for (const asset of list.data.filter((a) => a.uploaded && a.content_type.startsWith("video"))) {
        const name = asset.filename || asset.id;
        select.append(el("option", { value: asset.id, text: `${name} (${new Date(asset.created_at).toLocaleString()})` }));
      }
    } catch {
      select.replaceChildren(el("option", { value: "", text: "none available" }));
    }
  }

  /** Why an edit cannot start yet for want of the video, or "" when it can. */
  missing() {
    if (this.ready) return "";
    if (this.uploading) return "Wait for the video to finish uploading.";
    if (this.asset) return "Wait until the video is accepted.";
    return "Choose a video first (step 1).";
  }

  reset() {
    this.asset = null;
    this.ready = false;
    this.probe = null;
    showError($("video-error"), null);
    $("video-info").hidden = true;
    $("face-box").hidden = true;
    this.onChange();
  }

  async choose(file) {
    this.reset();
    if (this.localUrl) URL.revokeObjectURL(this.localUrl);
    this.localUrl = URL.createObjectURL(file);
    const video = $("input-video");
    video.src = this.localUrl;
    $("video-stage").hidden = false;
    const bar = $("upload-progress");
    bar.hidden = false;
    bar.value = 0;
    $("video-status").textContent = `Uploading ${file.name}…`;
    const turn = ++this.turn; // a file chosen during this upload wins
    this.uploading = true;
    this.onChange();
    try {
      const asset = await upload(file, "video", (done) => turn === this.turn && (bar.value = done));
      if (turn !== this.turn) return;
      this.asset = asset;
    } catch (error) {
      if (turn === this.turn) this.fail(error);
      return;
    } finally {
      if (turn === this.turn) this.uploading = false;
    }
    bar.value = 1;
    this.loadRecent();
    await this.measure(file.name);
  }

  async pick(assetId) {
    this.reset();
    if (this.localUrl) URL.revokeObjectURL(this.localUrl);
    this.localUrl = null;
    $("input-video").removeAttribute("src");
    $("video-stage").hidden = true;
    $("upload-progress").hidden = true;
    this.turn += 1;
    this.asset = assetId;
    await this.measure($("recent").selectedOptions[0].textContent);
  }

  fail(error) {
    $("video-status").textContent = "";
    $("video-stage").hidden = true;
    showError($("video-error"), error);
    this.ready = false;
    this.uploading = false;
    this.asset = null; // nothing to edit: choose again
    this.onFail();
    this.onChange();
  }

  /** The probe of the uploaded asset. Submitting is allowed once the upload is accepted: a worker busy
   * with a long edit answers the probe late, and the edit checks the video itself anyway. */
  async measure(name) {
    const asset = this.asset;
    const current = () => this.asset === asset;
    try {
      await api(`/v1/uploads/${asset}/probe`, { method: "POST" });
      if (!current()) return;
      $("video-status").textContent = `Uploaded ${name}; a worker is looking at it (you may submit already)…`;
      this.ready = true;
      this.onChange();
      const deadline = Date.now() + PROBE_WAIT_MS;
      let answer;
      for (;;) {
        answer = await api(`/v1/uploads/${asset}/probe`);
        if (!current()) return;
        if (answer.state !== "pending") break;
        if (Date.now() > deadline) {
          $("video-status").textContent = `Uploaded ${name}; no worker looked at it yet (the edit checks it itself).`;
          return;
        }
        await new Promise((r) => setTimeout(r, 400));
      }
      if (answer.state === "failed") throw new ApiError(422, answer.error.code, answer.error.message);
      this.show(name, answer);
    } catch (error) {
      if (current()) this.fail(error);
    }
  }

  show(name, answer) {
    this.probe = answer;
    $("info-length").textContent = `${seconds(answer.duration_s)} (${answer.frames} frames)`;
    $("info-fps").textContent = `${answer.fps.toFixed(2)} fps`;
    $("info-size").textContent = `${answer.width} × ${answer.height}`;
    const [x0, y0, x1, y1] = answer.face.box;
    $("info-face").textContent = `found in frame ${answer.face.frame}, ${Math.round(x1 - x0)} × ${Math.round(y1 - y0)} px`;
    $("video-info").hidden = false;
    $("video-status").textContent = `${name}: ready to edit.`;
    this.drawFace();
    this.onChange();
  }

  /** The face box over the shown frame, in the element's own pixels (the video is letterboxed). */
  drawFace() {
    const box = $("face-box");
    const video = $("input-video");
    if (!this.probe || $("video-stage").hidden || !video.videoWidth) {
      box.hidden = true;
      return;
    }
    const scale = Math.min(video.clientWidth / this.probe.width, video.clientHeight / this.probe.height);
    const left = (video.clientWidth - this.probe.width * scale) / 2 + video.offsetLeft;
    const top = (video.clientHeight - this.probe.height * scale) / 2 + video.offsetTop;
    const [x0, y0, x1, y1] = this.probe.face.box;
    box.style.left = `${left + x0 * scale}px`;
    box.style.top = `${top + y0 * scale}px`;
    box.style.width = `${(x1 - x0) * scale}px`;
    box.style.height = `${(y1 - y0) * scale}px`;
    box.hidden = false;
  }
}
