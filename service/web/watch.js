// Step 3: a submitted edit, followed through its server-sent events (polling if the stream breaks),
// cancelable while it runs; the result plays in sync beside the input, or under a before/after slider.
// A "follow the voice" result shows the segments it found, which can be taken into the timeline.

import { api, events } from "./api.js";
import { $, el, seconds, showError, target } from "./dom.js";
import { showQuality } from "./quality.js";
import { drawSegments } from "./timeline.js";

const FINAL = new Set(["succeeded", "failed", "canceled"]);
const DRIFT_S = 0.08;

export class Watch {
  /** `onEditFound(timeline)`: the person wants to edit the segments a voice edit found. */
  constructor(onFinal, onEditFound) {
    this.onFinal = onFinal;
    this.found = null;
    $("edit-found").addEventListener("click", () => this.found && onEditFound(this.found));
    this.jobId = null;
    this.abort = null;
    $("cancel").addEventListener("click", () => this.cancel());
    for (const radio of document.querySelectorAll("input[name=view]")) {
      radio.addEventListener("change", () => this.showView());
    }
    $("split").addEventListener("input", () => this.showSplit());
    this.syncVideos();
  }

  /** Follow the edit `jobId`; `inputUrl` (this session's copy of its input) lets the result be compared. */
  async open(jobId, inputUrl) {
    this.abort?.abort();
    this.abort = new AbortController();
    this.jobId = jobId;
    this.inputUrl = inputUrl;
    $("watch-panel").hidden = false;
    $("result").hidden = true;
    showError($("job-error"), null);
    $("job-line").textContent = "Loading the edit…";
    const signal = this.abort.signal;
    try {
      let job = await api(`/v1/edits/${jobId}`, { signal });
      this.show(job);
      while (!FINAL.has(job.state) && !signal.aborted) job = await this.follow(job, signal);
    } catch (error) {
      if (error.name === "AbortError") return;
      $("job-line").textContent = error.code === "edit_not_found" ? "Edit not found." : "";
      $("job-meter").hidden = true;
      showError($("job-error"), error);
    }
  }

  /** The stream's events until it ends; a broken stream is retried after a short wait. */
  async follow(job, signal) {
    try {
      for await (const { event, data } of events(`/v1/edits/${job.id}/events`, signal)) {
        if (event === "error") throw Object.assign(new Error(data.detail), { code: data.code });
        job = data;
        this.show(job);
      }
    } catch (error) {
      if (error.name === "AbortError" || error.code) throw error;
      await new Promise((r) => setTimeout(r, 1000));
      job = await api(`/v1/edits/${job.id}`, { signal });
      this.show(job);
    }
    return job;
  }

  show(job) {
    const percent = Math.round(job.progress * 100);
    $("job-meter").hidden = false;
    $("job-progress").value = job.progress;
    $("job-percent").textContent = `${percent} %`;
    const what = target(job);
    const of = job.video_name ? ` of ${job.video_name}` : "";
    $("job-line").textContent = `Edit ${job.id}${of} (${what}, intensity ${job.intensity}): ${job.state}${job.stage ? `, ${job.stage}` : ""}`;
    $("job-line").dataset.state = job.state;
    $("cancel").hidden = FINAL.has(job.state);
    showError($("job-error"), job.error ? Object.assign(new Error(job.error.message), { code: job.error.code }) : null);
    if (job.state === "succeeded") this.showResult(job);
    if (FINAL.has(job.state)) this.onFinal(job);
  }

  async cancel() {
    try {
      this.show(await api(`/v1/edits/${this.jobId}/cancel`, { method: "POST" }));
    } catch (error) {
      showError($("job-error"), error);
    }
  }

  showResult(job) {
    const after = $("after");
    const before = $("before");
    if (after.dataset.job !== job.id) {
      after.dataset.job = job.id;
      after.src = job.output_url;
      if (this.inputUrl) before.src = this.inputUrl;
      else before.removeAttribute("src");
    }
    $("before-figure").hidden = !this.inputUrl;
    $("no-before").hidden = Boolean(this.inputUrl);
    $("download").href = job.output_url;
    $("download").setAttribute("download", `${job.id}.mp4`);
    $("result").hidden = false;
    this.showView();
    this.showFound(job);
    showQuality(job);
  }

  /** The segments a from_audio edit found: on a strip, listed, and offered as a timeline. */
  showFound(job) {
    const segments = job.result?.segments || [];
    $("found").hidden = segments.length === 0;
    if (!segments.length) return;
    drawSegments($("found-strip"), segments, job.result.duration_s);
    $("found-list").replaceChildren(
      ...segments.map((s) =>
        el("li", {
          text: `${seconds(s.start_s)}–${seconds(s.end_s)}: ${s.target}${s.cosine === null ? "" : ` (cosine ${s.cosine.toFixed(2)})`}, intensity ${s.intensity.toFixed(2)}`,
        }),
      ),
    );
    this.found = { segments: segments.map(({ cosine, ...segment }) => segment) };
  }

  showView() {
    const overlay = document.querySelector("input[name=view]:checked").value === "overlay" && Boolean(this.inputUrl);
    $("compare").classList.toggle("overlay", overlay);
    $("compare").classList.toggle("side", !overlay);
    $("split-row").hidden = !overlay;
    this.showSplit();
  }

  showSplit() {
    $("compare").style.setProperty("--split", `${$("split").value}%`);
  }

  /** The input follows the result's own controls: play, pause, seek, rate, and any drift. */
  syncVideos() {
    const after = $("after");
    const before = $("before");
    const align = () => {
      if (before.src && Math.abs(before.currentTime - after.currentTime) > DRIFT_S) before.currentTime = after.currentTime;
    };
    after.addEventListener("play", () => {
      align();
      if (before.src) before.play().catch(() => {});
    });
    after.addEventListener("pause", () => {
      before.pause();
      align();
    });
    after.addEventListener("seeked", align);
    after.addEventListener("timeupdate", align);
    after.addEventListener("ratechange", () => (before.playbackRate = after.playbackRate));
  }
}
