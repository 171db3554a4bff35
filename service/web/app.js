// The page: an API key kept in session storage, then the three steps and the list of edits.
// Everything goes through the public API (api.js); the open edit is in the URL's fragment
// (#job=<id>), which never reaches the server.

import { api, apiKey } from "./api.js";
import { $, enable, showError } from "./dom.js";
import { EmotionStep } from "./emotion.js";
import { FacesStep } from "./faces.js";
import { JobList } from "./jobs.js";
import { OptionsStep } from "./options.js";
import { PreviewStep } from "./preview.js";
import { TimelineStep } from "./timeline.js";
import { VideoStep } from "./video.js";
import { Watch } from "./watch.js";

const ASSETS = "cmet.jobAssets"; // job id -> the video asset it was made from (re-run in this session)
const inputs = new Map(); // job id -> this page's local copy of its input video (compare with the result)

const video = new VideoStep(update, () => timeline.clear()); // a failed upload leaves no old timeline
const emotion = new EmotionStep(update);
const faces = new FacesStep(video, () => emotion.usable(), update);
const options = new OptionsStep();
const timeline = new TimelineStep({
  duration: () => video.probe?.duration_s || (video.localUrl && $("input-video").duration) || null,
  targets: () => emotion.usable(),
  onChange: update,
});
emotion.timeline = timeline;
const previews = new PreviewStep({ video, emotion, options });
const watch = new Watch(() => jobs.load(), (found) => {
  emotion.showTimeline(found);
  $("timeline-title").scrollIntoView();
  $("strip").querySelector(".edge")?.focus();
});
const jobs = new JobList({ open: (id) => (location.hash = `job=${id}`), rerun });

function jobAssets() {
  return JSON.parse(sessionStorage.getItem(ASSETS) || "{}");
}

function update() {
  timeline.refresh();
  if (!video.probe) faces.clear();
  faces.draw();
  enable($("submit"), video.missing() || (faces.count() ? "" : emotion.missing()));
  previews.update();
}

async function submit() {
  const button = $("submit");
  button.disabled = true;
  showError($("submit-error"), null);
  try {
    const target = faces.count() ? faces.fields() : await emotion.fields();
    const body = { video_asset: video.asset, ...target, ...(await options.fields()) };
    const job = await api("/v1/edits", { method: "POST", json: body, headers: { "Idempotency-Key": crypto.randomUUID() } });
    sessionStorage.setItem(ASSETS, JSON.stringify({ ...jobAssets(), [job.id]: video.asset }));
    if (video.localUrl) inputs.set(job.id, video.localUrl);
    location.hash = `job=${job.id}`;
    jobs.load();
  } catch (error) {
    showError($("submit-error"), error);
  } finally {
    update();
  }
}

async function rerun(job) {
  emotion.fill(job);
  const asset = jobAssets()[job.id];
  if (asset && asset !== video.asset) {
    $("recent").value = asset;
    await video.pick(asset);
    if (inputs.has(job.id)) video.localUrl = inputs.get(job.id);
  } else if (!asset) {
    $("video-status").textContent = "Choose the video of this edit again, then change what you like and submit.";
  }
  update();
  $("emotion-title").scrollIntoView();
  $("submit").focus();
}

function route() {
  const match = /^#job=([\w-]+)$/.exec(location.hash);
  if (match) watch.open(match[1], inputs.get(match[1]));
}

async function start() {
  const status = $("key-status");
  status.textContent = "Checking the key…";
  try {
    await emotion.load();
  } catch (error) {
    apiKey.clear();
    $("app").hidden = true;
    $("forget-key").hidden = true;
    showKeyEntry(true);
    status.textContent = "";
    status.classList.add("error");
    status.textContent =
      error.code === "unauthorized" ? `This key was refused: ${error.message} (${error.code}).` : `${error.message} (${error.code})`;
    return;
  }
  status.classList.remove("error");
  status.textContent = "Key accepted (kept in this tab only).";
  $("key").value = "";
  showKeyEntry(false);
  $("forget-key").hidden = false;
  $("app").hidden = false;
  previews.load();
  update(); // every disabled button says why from the start
  await Promise.all([video.loadRecent(), jobs.load()]);
  route();
}

/** The key's field and where keys come from, until a key is accepted (then only "Forget key"). */
function showKeyEntry(shown) {
  $("key-entry").hidden = !shown;
  $("key-hint").hidden = !shown;
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  apiKey.set($("key").value.trim());
  start();
});
$("forget-key").addEventListener("click", () => {
  apiKey.clear();
  location.hash = "";
  location.reload();
});
$("submit").addEventListener("click", submit);
$("input-video").addEventListener("loadedmetadata", () => timeline.refresh());
window.addEventListener("hashchange", route);
if (apiKey.get()) start();
