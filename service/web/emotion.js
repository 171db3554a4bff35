// Step 2: the emotion. The built-in emotions and the key's own as a grid, a blend of weights,
// speech clips, a timeline (timeline.js), or "follow the voice"; the intensity; a custom emotion
// made from clips.

import { api, upload } from "./api.js";
import { $, el, showError } from "./dom.js";

const MAX_CLIPS = 8;
const FROM_AUDIO = "from_audio";

export class EmotionStep {
  constructor(onChange) {
    this.onChange = onChange;
    this.emotions = [];
    this.timeline = null; // the TimelineStep, set by the page
    $("follow-voice").addEventListener("change", () => this.showMode());
    for (const radio of document.querySelectorAll("input[name=mode]")) {
      radio.addEventListener("change", () => this.showMode());
    }
    $("intensity").addEventListener("input", () => this.showIntensity());
    $("speech-files").addEventListener("change", () => this.onChange());
    this.recordings = [];
    this.recorder = null;
    $("record").addEventListener("click", () => (this.recorder ? this.recorder.stop() : this.record()));
    $("custom-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.createCustom();
    });
  }

  get mode() {
    return document.querySelector("input[name=mode]:checked").value;
  }

  get followVoice() {
    return $("follow-voice").checked;
  }

  showMode() {
    const follow = this.followVoice;
    $("mode-set").hidden = follow;
    $("voice-hint").hidden = !follow;
    $("neutral-self-label").hidden = !follow;
    $("emotion-set").hidden = follow || this.mode !== "emotion";
    $("blend-set").hidden = follow || this.mode !== "blend";
    $("speech-set").hidden = follow || this.mode !== "speech";
    $("timeline-panel").hidden = follow || this.mode !== "timeline";
    $("intensity-row").hidden = !follow && this.mode === "timeline";
    this.onChange();
  }

  /** The ready emotions, for the timeline's and the contact sheet's choices. */
  usable() {
    return this.emotions.filter((e) => e.state === "ready");
  }

  showIntensity() {
    $("intensity-out").textContent = Number($("intensity").value).toFixed(2);
  }

  async load() {
    const chosen = this.chosenEmotion();
    const list = await api("/v1/emotions");
    this.emotions = list.data;
    const grid = $("emotion-grid");
    const sliders = $("blend-sliders");
    grid.replaceChildren();
    sliders.replaceChildren();
    for (const emotion of this.emotions) {
      const usable = emotion.state === "ready";
      const id = `emotion-${emotion.id}`;
      const radio = el("input", { type: "radio", name: "emotion", id, value: emotion.id, disabled: !usable });
      radio.addEventListener("change", () => this.onChange());
      const note = emotion.kind === "custom" ? (usable ? " (yours)" : ` (${emotion.state})`) : "";
      grid.append(el("label", { class: `chip ${emotion.kind}`, for: id }, radio, el("span", { text: emotion.name + note })));
      if (!usable) continue;
      const slider = el("input", { type: "range", min: "0", max: "1", step: "0.05", value: "0", id: `blend-${emotion.id}` });
      slider.dataset.emotion = emotion.id;
      const out = el("output", { for: `blend-${emotion.id}`, text: "0.00" });
      slider.addEventListener("input", () => {
        out.textContent = Number(slider.value).toFixed(2);
        this.showBlendSum();
        this.onChange();
      });
      sliders.append(el("div", { class: "row slider" }, el("label", { for: `blend-${emotion.id}` }, emotion.name, el("span", { class: "visually-hidden", text: " weight" })), slider, out));
    }
    if (chosen) this.select(chosen);
  }

  chosenEmotion() {
    return document.querySelector("input[name=emotion]:checked")?.value || null;
  }

  blendWeights() {
    return [...document.querySelectorAll("#blend-sliders input")]
      .map((s) => [s.dataset.emotion, Number(s.value)])
      .filter(([, w]) => w > 0);
  }

  showBlendSum() {
    const total = this.blendWeights().reduce((sum, [, w]) => sum + w, 0);
    $("blend-sum").textContent = total ? `Weights add up to ${total.toFixed(2)}.` : "Move at least one slider.";
  }

  /** What the edit asks for, or null while nothing is chosen. */
  /** Why the chosen way cannot drive an edit yet, or "" when it can. */
  missing() {
    if (this.valid()) return "";
    if (this.mode === "timeline") return "Add a segment to the timeline.";
    if (this.mode === "emotion") return "Choose an emotion.";
    if (this.mode === "blend") return "Give at least one emotion a weight.";
    return `Choose or record speech clips (up to ${MAX_CLIPS}).`;
  }

  valid() {
    if (this.followVoice) return true;
    if (this.mode === "timeline") return this.timeline.valid();
    if (this.mode === "emotion") return this.chosenEmotion() !== null;
    if (this.mode === "blend") return this.blendWeights().length > 0;
    const n = this.clips().length;
    return n > 0 && n <= MAX_CLIPS;
  }

  /** The body fields of the edit; speech clips are uploaded as assets first. */
  async fields() {
    const intensity = Number($("intensity").value);
    if (this.followVoice) return { emotion: FROM_AUDIO, intensity, ...($("neutral-self").checked ? { neutral: "self" } : {}) };
    if (this.mode === "timeline") return this.timeline.fields();
    if (this.mode === "emotion") return { emotion: this.chosenEmotion(), intensity };
    if (this.mode === "blend") {
      return { emotion: this.blendWeights().map(([name, w]) => `${name}=${w}`).join(","), intensity };
    }
    const assets = [];
    for (const file of this.clips()) assets.push(await upload(file, "speech"));
    return { speech_assets: assets, intensity };
  }

  /** The chosen speech files and the clips recorded here. */
  clips() {
    return [...$("speech-files").files, ...this.recordings];
  }

  /** Record a clip from the microphone until the button is pressed again. */
  async record() {
    const status = $("record-status");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      status.textContent = `No microphone: ${error.message}`;
      return;
    }
    const chunks = [];
    const recorder = new MediaRecorder(stream);
    this.recorder = recorder;
    recorder.addEventListener("dataavailable", (e) => e.data.size && chunks.push(e.data));
    recorder.addEventListener("stop", () => {
      for (const track of stream.getTracks()) track.stop();
      this.recorder = null;
      $("record").textContent = "Record a clip";
      $("record").setAttribute("aria-pressed", "false");
      const type = (recorder.mimeType || "audio/webm").split(";")[0];
      const clip = new File(chunks, `recording-${this.recordings.length + 1}.webm`, { type });
      this.recordings.push(clip);
      status.textContent = `Recorded ${clip.name}.`;
      this.showRecordings();
      this.onChange();
    });
    recorder.start();
    $("record").textContent = "Stop recording";
    $("record").setAttribute("aria-pressed", "true");
    status.textContent = "Recording…";
  }

  showRecordings() {
    $("recordings").replaceChildren(
      ...this.recordings.map((clip) => {
        const audio = el("audio", { controls: true, src: URL.createObjectURL(clip), "aria-label": clip.name });
        const remove = el("button", { type: "button", text: "Remove", "aria-label": `Remove ${clip.name}` });
        remove.addEventListener("click", () => {
          this.recordings = this.recordings.filter((c) => c !== clip);
          this.showRecordings();
          this.onChange();
        });
        return el("li", {}, el("span", { text: clip.name }), audio, remove);
      }),
    );
  }

  /** Set the form from an earlier edit (re-run with changes). */
  fill(job) {
    $("intensity").value = String(job.intensity);
    this.showIntensity();
    const emotion = job.emotion || "";
    if (job.timeline) {
      this.showTimeline(job.timeline);
      return;
    }
    $("follow-voice").checked = emotion === FROM_AUDIO;
    if (emotion.includes("=")) {
      document.querySelector("input[name=mode][value=blend]").checked = true;
      const weights = Object.fromEntries(emotion.split(",").map((p) => p.split("=")));
      for (const slider of document.querySelectorAll("#blend-sliders input")) {
        slider.value = weights[slider.dataset.emotion] || "0";
        slider.dispatchEvent(new Event("input"));
      }
    } else if (emotion && emotion !== FROM_AUDIO) {
      document.querySelector("input[name=mode][value=emotion]").checked = true;
      this.select(emotion);
    } else if (!emotion) {
      document.querySelector("input[name=mode][value=speech]").checked = true;
    }
    this.showMode();
  }

  /** Drive the edit by `timeline` (loaded into the strip). */
  showTimeline(timeline) {
    $("follow-voice").checked = false;
    document.querySelector("input[name=mode][value=timeline]").checked = true;
    this.timeline.load(timeline);
    this.showMode();
  }

  /** Pick `emotion` at `intensity` (a contact sheet's cell). */
  pick(emotion, intensity) {
    $("follow-voice").checked = false;
    document.querySelector("input[name=mode][value=emotion]").checked = true;
    this.select(emotion);
    $("intensity").value = String(intensity);
    this.showIntensity();
    this.showMode();
  }

  select(emotion) {
    const match = this.emotions.find((e) => e.id === emotion || e.name === emotion);
    const radio = match && document.getElementById(`emotion-${match.id}`);
    if (radio && !radio.disabled) radio.checked = true;
  }

  async createCustom() {
    const status = $("custom-status");
    const form = new FormData();
    form.append("name", $("custom-name").value.trim());
    for (const file of $("custom-clips").files) form.append("speech", file);
    status.textContent = "Sending the clips…";
    try {
      let emotion = await api("/v1/emotions", { method: "POST", form });
      status.textContent = `${emotion.name}: being built from the clips…`;
      while (emotion.state === "pending") {
        await new Promise((r) => setTimeout(r, 1000));
        emotion = (await api("/v1/emotions")).data.find((e) => e.id === emotion.id) || { state: "failed", name: emotion.name };
      }
      status.textContent =
        emotion.state === "ready"
          ? `${emotion.name} is ready.`
          : `${emotion.name} failed: ${emotion.error?.message || "removed"} (${emotion.error?.code || "emotion_not_found"})`;
      await this.load();
    } catch (error) {
      status.textContent = "";
      showError(status, error);
      status.hidden = false;
    }
  }
}
