// The timeline strip, shown under the choice "a timeline": segments with an emotion and an intensity each, added at the
// video's position, their edges dragged with the mouse or moved with the arrow keys, submitted as
// the edit's `timeline`. The same drawing shows the segments a "follow the voice" edit found.

import { $, el, seconds } from "./dom.js";

const MIN_S = 0.2; // shortest segment the strip makes
const NEW_S = 1.5; // length of an added segment, where the gap allows
const STEP_S = 0.1; // an arrow key's move; with Shift, 1 s

const round = (t) => Math.round(t * 100) / 100;

/** Draw `segments` on `strip` as read-only blocks (the segments a from_audio edit found). */
export function drawSegments(strip, segments, duration) {
  strip.replaceChildren(
    ...segments.map((s) => {
      const block = el("div", { class: "seg found", title: `${seconds(s.start_s)}–${seconds(s.end_s)}: ${s.target}` }, el("span", { text: s.target }));
      place(block, s, duration);
      return block;
    }),
  );
}

function place(block, segment, duration) {
  block.style.left = `${(segment.start_s / duration) * 100}%`;
  block.style.width = `${((segment.end_s - segment.start_s) / duration) * 100}%`;
}

export class TimelineStep {
  /** `duration()`: the video's length in seconds, or null while unknown; `targets()`: the usable emotions. */
  constructor({ duration, targets, onChange }) {
    this.duration = duration;
    this.targets = targets;
    this.onChange = onChange;
    this.segments = [];
    this.selected = -1;
    $("add-segment").addEventListener("click", () => this.add());
    $("remove-segment").addEventListener("click", () => this.remove(this.selected));
    $("segment-emotion").addEventListener("change", (e) => this.edit({ target: e.target.value }));
    $("segment-intensity").addEventListener("input", (e) => this.edit({ intensity: Number(e.target.value) }));
    const video = $("input-video");
    video.addEventListener("timeupdate", () => this.showPlayhead());
    video.addEventListener("seeked", () => this.showPlayhead());
    $("strip").addEventListener("pointerdown", (e) => {
      if (e.target === $("strip") && this.length && video.src) video.currentTime = this.timeAt(e.clientX);
    });
  }

  get length() {
    return this.duration() || 0;
  }

  valid() {
    return this.segments.length > 0 && this.length > 0;
  }

  fields() {
    const segments = this.segments.map((s) => ({
      start_s: round(s.start_s),
      end_s: round(s.end_s),
      target: s.target,
      intensity: s.intensity,
      // keyframes that came with found segments, kept while their segment still holds them
      keyframes: (s.keyframes || []).filter((k) => k.t_s >= round(s.start_s) && k.t_s <= round(s.end_s)),
    }));
    return { timeline: { transition_s: Number($("transition").value), segments } };
  }

  /** Take a timeline (an applied one, or the segments a voice edit found) into the strip. */
  load(timeline) {
    this.segments = timeline.segments.map((s) => ({
      start_s: s.start_s,
      end_s: s.end_s,
      target: typeof s.target === "string" ? s.target : this.defaultTarget(),
      intensity: s.intensity ?? 1,
      keyframes: s.keyframes || [],
    }));
    if (timeline.transition_s !== undefined) $("transition").value = String(timeline.transition_s);
    this.selected = this.segments.length ? 0 : -1;
    this.build();
    $("timeline-status").textContent = `Took ${this.segments.length} segment${this.segments.length === 1 ? "" : "s"} into the strip.`;
  }

  defaultTarget() {
    const names = this.targets().map((e) => e.name);
    return names.includes("happy") ? "happy" : names[0];
  }

  /** A segment at the video's position, or in the first gap long enough. */
  add() {
    const length = this.length;
    if (!length) return;
    const gaps = [];
    let from = 0;
    for (const s of this.segments) {
      if (s.start_s - from >= MIN_S) gaps.push([from, s.start_s]);
      from = s.end_s;
    }
    if (length - from >= MIN_S) gaps.push([from, length]);
    if (!gaps.length) {
      $("timeline-status").textContent = "No room for another segment; shorten one first.";
      return;
    }
    const now = $("input-video").src ? $("input-video").currentTime : 0;
    const [gapStart, gapEnd] = gaps.find(([a, b]) => now >= a && now <= b - MIN_S) || gaps[0];
    const start = now >= gapStart && now <= gapEnd - MIN_S ? now : gapStart;
    const previous = this.segments.filter((s) => s.end_s <= start).at(-1);
    const segment = {
      start_s: round(start),
      end_s: round(Math.min(gapEnd, start + NEW_S)),
      target: previous?.target || this.defaultTarget(),
      intensity: 1,
      keyframes: [],
    };
    this.segments.push(segment);
    this.segments.sort((a, b) => a.start_s - b.start_s);
    this.selected = this.segments.indexOf(segment);
    this.build();
    $("timeline-status").textContent = `Added segment ${this.selected + 1}: ${this.describe(segment)}.`;
  }

  /** No segments (the video they were drawn for failed). */
  clear() {
    this.segments = [];
    this.selected = -1;
    this.build();
    $("timeline-status").textContent = "";
  }

  remove(index) {
    if (index < 0) return;
    this.segments.splice(index, 1);
    this.selected = Math.min(index, this.segments.length - 1);
    this.build();
    $("timeline-status").textContent = `Removed segment ${index + 1}.`;
  }

  edit(change) {
    const segment = this.segments[this.selected];
    if (!segment) return;
    Object.assign(segment, change);
    $("timeline-status").textContent = "";
    this.place();
  }

  select(index) {
    this.selected = index;
    this.place();
  }

  describe(s) {
    return `${seconds(s.start_s)}–${seconds(s.end_s)}, ${s.target} at ${s.intensity.toFixed(2)}`;
  }

  /** Move edge `side` ("start_s" or "end_s") of segment `index` to `t`, within its neighbours. */
  move(index, side, t) {
    const s = this.segments[index];
    const before = this.segments[index - 1];
    const after = this.segments[index + 1];
    if (side === "start_s") s.start_s = round(Math.min(Math.max(t, before ? before.end_s : 0), s.end_s - MIN_S));
    else s.end_s = round(Math.max(Math.min(t, after ? after.start_s : this.length), s.start_s + MIN_S));
    this.selected = index;
    $("timeline-status").textContent = "";
    this.place();
  }

  timeAt(clientX) {
    const box = $("strip").getBoundingClientRect();
    return (Math.min(Math.max(clientX - box.left, 0), box.width) / box.width) * this.length;
  }

  /** Fit the strip to the video's length, when that changed (a segment past the end is cut). */
  refresh() {
    const length = this.length;
    if (length === this.shownLength) return;
    this.shownLength = length;
    $("strip-end").textContent = length ? seconds(length) : "";
    $("add-segment").disabled = !length;
    if (length) {
      for (const s of this.segments) s.end_s = Math.min(s.end_s, length);
      this.segments = this.segments.filter((s) => s.end_s - s.start_s > 0);
    }
    this.build();
  }

  /** Make the strip's blocks and edge handles anew (segments added or removed). */
  build() {
    const strip = $("strip");
    strip.replaceChildren($("playhead"));
    const names = [...new Set([...this.targets().map((e) => e.name), ...this.segments.map((s) => s.target)])];
    $("segment-emotion").replaceChildren(...names.map((name) => el("option", { value: name, text: name })));
    this.segments.forEach((segment, index) => {
      const body = el("button", { type: "button", class: "seg-body", onclick: () => this.select(index) });
      const block = el("div", { class: "seg" });
      for (const side of ["start_s", "end_s"]) {
        const handle = el("span", {
          class: `edge ${side === "start_s" ? "start" : "end"}`,
          role: "slider",
          tabindex: "0",
          "aria-label": `${side === "start_s" ? "Start" : "End"} of segment ${index + 1}`,
          "aria-valuemin": "0",
        });
        handle.addEventListener("keydown", (e) => {
          const step = e.shiftKey ? 1 : STEP_S;
          const delta = { ArrowLeft: -step, ArrowDown: -step, ArrowRight: step, ArrowUp: step }[e.key];
          if (delta === undefined) return;
          e.preventDefault();
          this.move(index, side, segment[side] + delta);
        });
        handle.addEventListener("pointerdown", (e) => {
          e.preventDefault();
          handle.focus();
          handle.setPointerCapture(e.pointerId);
          const drag = (m) => this.move(index, side, this.timeAt(m.clientX));
          handle.addEventListener("pointermove", drag);
          handle.addEventListener("pointerup", () => handle.removeEventListener("pointermove", drag), { once: true });
        });
        block.append(handle);
      }
      block.firstChild.after(body); // tab order: start edge, the segment, end edge
      strip.append(block);
    });
    this.place();
    this.onChange();
  }

  /** Put every block where its segment is, and the editor on the selected one. */
  place() {
    const length = this.length || 1;
    const blocks = [...$("strip").querySelectorAll(".seg")];
    this.segments.forEach((segment, index) => {
      const block = blocks[index];
      place(block, segment, length);
      block.classList.toggle("selected", index === this.selected);
      const body = block.querySelector(".seg-body");
      body.textContent = `${segment.target} ${segment.intensity.toFixed(2)}`;
      body.setAttribute("aria-label", `Segment ${index + 1}: ${this.describe(segment)}`);
      body.title = this.describe(segment);
      body.setAttribute("aria-pressed", String(index === this.selected));
      for (const handle of block.querySelectorAll(".edge")) {
        const side = handle.classList.contains("start") ? "start_s" : "end_s";
        handle.setAttribute("aria-valuemax", String(round(length)));
        handle.setAttribute("aria-valuenow", String(segment[side]));
        handle.setAttribute("aria-valuetext", seconds(segment[side]));
      }
    });
    const segment = this.segments[this.selected];
    $("segment-editor").hidden = !segment;
    if (segment) {
      $("segment-legend").textContent = `Segment ${this.selected + 1}: ${seconds(segment.start_s)}–${seconds(segment.end_s)}`;
      $("segment-emotion").value = segment.target;
      $("segment-intensity").value = String(segment.intensity);
      $("segment-intensity-out").textContent = segment.intensity.toFixed(2);
    }
    this.showPlayhead();
  }

  showPlayhead() {
    const video = $("input-video");
    const length = this.length;
    $("playhead").hidden = !(length && video.src);
    if (length) $("playhead").style.left = `${(Math.min(video.currentTime, length) / length) * 100}%`;
  }
}
