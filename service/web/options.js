// "More options": the HD face (enhance, its strength), the eyes (gaze and blinking kept or switched
// off, on backbones with eye codes) and dubbing (a speech track the lips follow, and how the head
// motion fills a longer track), as body fields of the edit.

import { upload } from "./api.js";
import { $ } from "./dom.js";

export class OptionsStep {
  constructor() {
    this.track = null; // [File, its asset id]: the track goes up once, however often it is submitted
    $("speech-track").addEventListener("change", (e) => ($("pose-fill").disabled = !e.target.files.length));
    $("enhance-strength").addEventListener("input", (e) => ($("enhance-strength-out").textContent = Number(e.target.value).toFixed(2)));
  }

  /** The HD face and eye fields (edits and contact sheets both take them). */
  enhance() {
    return {
      enhance: $("enhance").value,
      enhance_strength: Number($("enhance-strength").value),
      gaze: $("gaze").value,
      blink: $("blink").value,
    };
  }

  /** All the fields of an edit; a chosen speech track is uploaded first and makes it a dub. */
  async fields() {
    const quality = $("quality-option").checked ? {} : { quality: false };
    const file = $("speech-track").files[0];
    if (!file) return { ...this.enhance(), ...quality };
    if (this.track?.[0] !== file) this.track = [file, await upload(file, "speech")];
    return { ...this.enhance(), ...quality, lips: "speech", speech_track_asset: this.track[1], pose_fill: $("pose-fill").value };
  }
}
