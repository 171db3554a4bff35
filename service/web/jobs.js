// The key's edits: state, emotion, created, length; filtered by state; open, re-run, delete.

import { api } from "./api.js";
import { $, el, seconds, showError, target, when } from "./dom.js";

const ACTIVE = new Set(["queued", "running"]);

export class JobList {
  constructor({ open, rerun }) {
    this.open = open;
    this.rerun = rerun;
    $("state-filter").addEventListener("change", () => this.load());
    $("refresh").addEventListener("click", () => this.load());
  }

  async load() {
    const state = $("state-filter").value;
    const body = $("jobs").tBodies[0];
    try {
      const list = await api(`/v1/edits?limit=50${state ? `&state=${state}` : ""}`);
      showError($("jobs-error"), null);
      body.replaceChildren(...list.data.map((job) => this.row(job)));
      $("jobs-empty").hidden = list.data.length > 0;
    } catch (error) {
      showError($("jobs-error"), error);
    }
  }

  row(job) {
    const actions = el(
      "div",
      { class: "actions" },
      el("button", { type: "button", text: "Open", "aria-label": `Open edit ${job.id}`, onclick: () => this.open(job.id) }),
      el("button", { type: "button", text: "Re-run", "aria-label": `Re-run edit ${job.id} with changes`, onclick: () => this.rerun(job) }),
    );
    if (!ACTIVE.has(job.state)) {
      actions.append(
        el("button", { type: "button", text: "Delete", "aria-label": `Delete edit ${job.id}`, onclick: () => this.remove(job) }),
      );
    }
    return el(
      "tr",
      { "data-job": job.id },
      el("td", {}, el("span", { class: `state ${job.state}`, text: job.state })),
      el("td", { class: "name", text: job.video_name || "" }),
      el("td", { text: target(job) }),
      el("td", { text: when(job.created_at) }),
      el("td", { text: job.result ? seconds(job.result.duration_s) : "" }),
      el("td", {}, actions),
    );
  }

  async remove(job) {
    const what = `the ${target(job)} edit${job.video_name ? ` of ${job.video_name}` : ""}`;
    if (!window.confirm(`Delete ${what}? Its result is removed for good.`)) return;
    try {
      await api(`/v1/edits/${job.id}`, { method: "DELETE" });
      await this.load();
    } catch (error) {
      showError($("jobs-error"), error);
    }
  }
}
