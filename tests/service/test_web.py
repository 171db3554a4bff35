"""The web page at `/`, in a real headless Chromium (the system's, driven by Playwright) against a real
`cmet serve` on tiny models: a person's whole edit, and the errors they can meet.

Screenshots of the main states go to the test's temporary folder (`web-shots/`), for CI artifacts
and for a person to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from cmet_core.media.video import probe
from tests.media_factory import make_two_face_clip
from tests.needs import CHROMIUM
from tests.service.conftest import new_key
from tests.service.local_serve import create_key, running_serve, serve_env
from tests.service.stack import Stack

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) drives the browser")
pytestmark = pytest.mark.browser

MEAD = "video/mead_W009_038_cropped.mp4"


class Served:
    def __init__(self, url: str, keys: dict[str, str], shots: Path) -> None:
        self.url, self.keys, self.shots = url, keys, shots


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_set: Path) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("web")
    env = serve_env(tmp / "data")
    keys = {name: create_key(env, name)["key"] for name in ("alice", "bob")}
    log = tmp / "serve.log"
    with running_serve(env, tiny_set, log) as (url, _):
        assert f"open {url}/ in a browser" in log.read_text()
        shots = tmp / "web-shots"
        shots.mkdir()
        print(f"\nscreenshots: {shots}")
        yield Served(url, keys, shots)


@pytest.fixture(scope="module")
def browser(served: Served) -> Iterator[sync_api.Browser]:  # noqa: ARG001 (the server first, so it outlives the browser)
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            # a generated tone as the microphone, allowed without a prompt
            args=[
                "--autoplay-policy=no-user-gesture-required",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    yield page
    context.close()
    assert problems == [], problems


def sign_in(page: sync_api.Page, served: Served, key: str, fragment: str = "", host: str = "127.0.0.1") -> None:
    page.goto(served.url.replace("127.0.0.1", host) + "/" + fragment)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use key").click()


def test_a_person_edits_a_video_end_to_end(
    page: sync_api.Page, served: Served, test_data: Path, tmp_path: Path
) -> None:
    expect = sync_api.expect
    source = probe(test_data / MEAD)
    page.goto(served.url + "/")
    expect(page.locator("#key-hint")).to_contain_text("cmet keys create")  # where a key comes from
    page.screenshot(path=served.shots / "0-start.png")
    sign_in(page, served, served.keys["alice"])
    expect(page.locator("#app")).to_be_visible()
    expect(page.get_by_label("API key")).to_be_hidden()  # accepted: only "Forget key" stays
    expect(page.locator("#key-hint")).to_be_hidden()
    expect(page.locator("#submit-why")).to_have_text("Choose a video first (step 1).")
    assert page.evaluate("sessionStorage.getItem('cmet.key')") == served.keys["alice"]
    assert served.keys["alice"] not in page.url

    page.set_input_files("#video-file", str(test_data / MEAD))
    expect(page.locator("#video-info")).to_be_visible(timeout=90_000)
    expect(page.locator("#upload-progress")).to_have_js_property("value", 1)
    expect(page.locator("#info-length")).to_contain_text("7.00 s (175 frames)")
    expect(page.locator("#info-fps")).to_have_text("25.00 fps")
    expect(page.locator("#info-size")).to_have_text("256 × 256")
    expect(page.locator("#face-box")).to_be_visible()
    face, shown = page.locator("#face-box").bounding_box(), page.locator("#input-video").bounding_box()
    assert (
        face
        and shown
        and face["width"] > 20
        and shown["x"] <= face["x"] < face["x"] + face["width"] <= shown["x"] + shown["width"]
    )
    page.screenshot(path=served.shots / "1-video-probed.png", full_page=True)

    expect(page.locator("#submit")).to_be_disabled()
    for button, why in (("submit", "Choose an emotion."), ("make-clip", "Choose an emotion."), ("make-sheet", "Tick")):
        expect(page.locator(f"#{button}-why")).to_contain_text(why)  # a disabled button says why
    page.get_by_role("radio", name="happy", exact=True).check()
    expect(page.locator("#submit-why")).to_be_hidden()
    page.get_by_label("Intensity", exact=True).fill("1.2")
    expect(page.locator("#intensity-out")).to_have_text("1.20")
    page.evaluate(
        """() => { const out = document.getElementById('job-percent'); window.seen = [];
        new MutationObserver(() => seen.push(out.textContent)).observe(out, {childList: true, characterData: true,
        subtree: true}); }"""
    )
    page.get_by_role("button", name="Edit the video").click()
    expect(page.locator("#job-line")).to_contain_text("happy", timeout=30_000)
    assert "#job=edt_" in page.url or "#job=" in page.url
    page.screenshot(path=served.shots / "2-watching.png", full_page=True)
    expect(page.locator("#job-line")).to_have_attribute("data-state", "succeeded", timeout=240_000)
    expect(page.locator("#job-percent")).to_have_text("100 %")
    seen = page.evaluate("window.seen")
    assert seen[-1] == "100 %" and len(seen) >= 2, seen  # live progress, not only the end

    after, before = page.locator("#after"), page.locator("#before")
    expect(page.locator("#result")).to_be_visible()
    page.wait_for_function("() => document.getElementById('after').readyState >= 2", timeout=30_000)
    assert after.evaluate("v => v.getBoundingClientRect().width") <= source.width + 1  # natural size, not blown up
    duration = after.evaluate("v => v.duration")
    assert abs(duration - source.duration_s) < 1 / float(source.fps), (duration, source.duration_s)
    assert abs(before.evaluate("v => v.duration") - duration) < 1 / float(source.fps)
    after.evaluate("v => v.play()")
    page.wait_for_function("() => document.getElementById('after').currentTime > 0.5", timeout=30_000)
    times = page.evaluate("() => ['after', 'before'].map((id) => document.getElementById(id).currentTime)")
    assert abs(times[0] - times[1]) < 0.25, times  # the input plays in sync with the result
    after.evaluate("v => v.pause()")
    page.screenshot(path=served.shots / "3-result-side-by-side.png", full_page=True)
    page.get_by_label("before / after slider").check()
    expect(page.get_by_label("Before / after", exact=True)).to_be_visible()
    page.get_by_label("Before / after", exact=True).fill("30")
    assert page.locator("#compare").evaluate("c => c.style.getPropertyValue('--split')") == "30%"
    clip = page.locator("#before-figure").evaluate("f => getComputedStyle(f).clipPath")
    bottom = re.fullmatch(r"inset\(0px 70% (\d+)px 0px\)", clip)
    assert bottom and int(bottom.group(1)) >= 40, clip  # "before" leaves the play button and time uncovered
    page.locator("#result").screenshot(path=served.shots / "4-result-before-after.png")
    # the quality report (on by default) beside the result: a row per measure and the expression curve
    expect(page.get_by_label("Quality report (identity, lips, steadiness, emotion, faces)")).to_be_checked()
    expect(page.locator("#quality-rows tr")).to_have_count(5)
    expect(page.locator("#quality-rows")).to_contain_text("identity")
    assert page.locator("#quality-curve polyline").count() == 7
    assert page.locator("#quality-curve polyline.target").count() == 1  # happy, the target, drawn bold
    page.locator("#quality").screenshot(path=served.shots / "4b-quality.png")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download the result").click()
    saved = tmp_path / "result.mp4"
    download.value.save_as(saved)
    result = probe(saved)
    assert (result.frame_count, result.width, result.height) == (source.frame_count, source.width, source.height)

    row = page.locator("#jobs tbody tr").first
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text("happy")
    expect(row).to_contain_text(Path(MEAD).name)
    page.select_option("#state-filter", "failed")
    expect(page.locator("#jobs-empty")).to_be_visible()
    page.select_option("#state-filter", "")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    page.screenshot(path=served.shots / "5-jobs.png", full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=served.shots / "6-phone.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})

    # keyboard: every control of the three steps is reached with Tab, and shows where the focus is
    page.evaluate("() => document.activeElement.blur()")
    reached, unmarked = set(), set()
    for _ in range(160):
        page.keyboard.press("Tab")
        tag, element, outline = page.evaluate(
            "() => ['tagName', 'id'].map((k) => document.activeElement[k])"
            ".concat(getComputedStyle(document.activeElement).outlineStyle)"
        )
        reached.add(element)
        if outline != "solid" and tag not in {"VIDEO", "BODY"}:  # a video's own controls draw their focus
            unmarked.add(element)
    wanted = {"forget-key", "video-file", "recent", "intensity", "submit", "split", "download", "state-filter"}
    assert wanted <= reached and any(e.startswith("emotion-") for e in reached), wanted - reached
    assert unmarked == set(), unmarked

    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.get_by_role("button", name="Delete edit").first.click()
    expect(page.locator("#jobs tbody tr")).to_have_count(1)  # not confirmed: kept
    assert Path(MEAD).name in asked[0], asked
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete edit").first.click()
    expect(page.locator("#jobs-empty")).to_be_visible()


def test_a_wrong_key_is_refused_with_the_reason(page: sync_api.Page, served: Served) -> None:
    sign_in(page, served, "cmet_not_a_real_key")
    status = page.locator("#key-status")
    sync_api.expect(status).to_contain_text("unknown or revoked API key (unauthorized)")
    sync_api.expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('cmet.key')") is None
    page.screenshot(path=served.shots / "7-wrong-key.png")


def test_a_file_that_is_not_a_video_shows_the_api_code(page: sync_api.Page, served: Served) -> None:
    """Opened at localhost, not 127.0.0.1: the upload stays same-origin and gets as far as the check.
    The error names the file, not its asset id."""
    sign_in(page, served, served.keys["alice"], host="localhost")
    page.set_input_files(
        "#video-file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"meeting notes, not a video\n" * 50}
    )
    error = page.locator("#video-error")
    sync_api.expect(error).to_contain_text("(not_media)", timeout=30_000)
    sync_api.expect(error).to_contain_text("'notes.txt'")
    assert "ast_" not in error.text_content()
    sync_api.expect(page.locator("#submit")).to_be_disabled()
    page.get_by_text("Create a custom emotion from speech clips").click()
    name = page.locator("#custom-name")  # the pattern is a valid expression for the browser, so it checks
    name.fill("Warm Apology")
    assert name.evaluate("e => e.validity.patternMismatch")
    name.fill("warm_apology-2")
    assert name.evaluate("e => e.validity.valid")
    page.screenshot(path=served.shots / "8-not-a-video.png")


def test_another_keys_edit_in_the_url_is_not_found(page: sync_api.Page, served: Served, test_data: Path) -> None:
    bob = {"Authorization": f"Bearer {served.keys['bob']}"}
    with (test_data / MEAD).open("rb") as f:
        made = httpx.post(
            served.url + "/v1/edits", headers=bob, files={"video": f}, data={"emotion": "sad"}, timeout=60
        )
    assert made.status_code == 202, made.text
    job_id = made.json()["id"]
    httpx.post(f"{served.url}/v1/edits/{job_id}/cancel", headers=bob)
    sign_in(page, served, served.keys["alice"], f"#job={job_id}")
    sync_api.expect(page.locator("#job-line")).to_have_text("Edit not found.")
    sync_api.expect(page.locator("#job-error")).to_contain_text("(edit_not_found)")
    page.screenshot(path=served.shots / "9-not-found.png")


def test_the_page_and_its_files_carry_a_strict_policy(served: Served) -> None:
    for path in ("/", "/web/app.js", "/web/app.css"):
        r = httpx.get(served.url + path)
        assert r.status_code == 200, path
        policy = r.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
        assert r.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(served.url + "/web/../pyproject.toml").status_code == 404
    assert httpx.get(served.url + "/web/nothing.js").status_code == 404
    web = Path(__file__).parents[2] / "service" / "web"
    addresses = {
        (path.name, url)
        for path in web.rglob("*")
        if path.is_file()
        for url in re.findall(r"https?://[^\s\"'`)]+", path.read_text())
    }
    # the SVG namespace names a vocabulary for createElementNS; nothing is fetched from it
    assert addresses <= {("quality.js", "http://www.w3.org/2000/svg")}, "nothing on the page loads from elsewhere"


def test_the_api_docs_work_offline(page: sync_api.Page, served: Served) -> None:
    """Swagger UI from the package the service installs, under the page's policy: the browser here has
    no internet, so a CDN's script would leave a blank page."""
    page.goto(served.url + "/docs")
    sync_api.expect(page.locator(".swagger-ui .info .title")).to_contain_text("cmet", timeout=30_000)
    sync_api.expect(page.get_by_text("/v1/edits", exact=True).first).to_be_visible()


def upload_video(page: sync_api.Page, video: Path) -> None:
    page.set_input_files("#video-file", str(video))
    sync_api.expect(page.locator("#video-info")).to_be_visible(timeout=90_000)


def test_a_blend_is_canceled_then_rerun_with_its_settings(page: sync_api.Page, served: Served, test_data: Path) -> None:
    expect = sync_api.expect
    sign_in(page, served, served.keys["alice"])
    upload_video(page, test_data / MEAD)
    page.get_by_label("a blend").check()
    expect(page.locator("#emotion-set")).to_be_hidden()
    page.get_by_label("happy weight").fill("0.5")
    page.get_by_label("sad weight").fill("0.3")
    expect(page.locator("#blend-sum")).to_have_text("Weights add up to 0.80.")
    page.get_by_role("button", name="Edit the video").click()
    expect(page.locator("#job-line")).to_contain_text("happy=0.5,sad=0.3", timeout=30_000)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#job-line")).to_have_attribute("data-state", "canceled", timeout=60_000)
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    page.screenshot(path=served.shots / "10-canceled.png", full_page=True)

    page.reload()  # the key stays for the tab; the page starts afresh
    expect(page.locator("#app")).to_be_visible()
    page.get_by_label("one emotion").check()
    page.get_by_role("button", name="Re-run edit").first.click()
    expect(page.get_by_label("a blend")).to_be_checked()
    expect(page.get_by_label("happy weight")).to_have_value("0.5")
    expect(page.get_by_label("sad weight")).to_have_value("0.3")
    expect(page.locator("#submit")).to_be_focused()


def test_a_clip_recorded_on_the_page_drives_a_speech_edit(page: sync_api.Page, served: Served, test_data: Path) -> None:
    expect = sync_api.expect
    sign_in(page, served, served.keys["alice"])
    upload_video(page, test_data / MEAD)
    page.get_by_label("speech clips", exact=True).check()
    expect(page.locator("#submit")).to_be_disabled()
    page.get_by_role("button", name="Record a clip").click()
    expect(page.locator("#record-status")).to_have_text("Recording…")
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Stop recording").click()
    expect(page.locator("#recordings li")).to_have_count(1)
    page.screenshot(path=served.shots / "11-recorded.png", full_page=True)
    page.get_by_role("button", name="Edit the video").click()
    expect(page.locator("#job-line")).to_contain_text("(speech, intensity 1)", timeout=30_000)
    expect(page.locator("#job-line")).to_have_attribute("data-state", "succeeded", timeout=240_000)


def test_the_page_works_on_the_scaled_stack(browser: sync_api.Browser, stack: Stack, test_data: Path) -> None:
    """The compose shape (PostgreSQL, Redis, Celery, S3): the upload and the result cross to the object
    store's origin, which the page's policy names."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    policy = httpx.get(stack.api_url + "/").headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    for media in ("connect-src", "media-src", "img-src"):  # uploads, results, contact sheet cells
        assert stack.env["CMET_S3_ENDPOINT_URL"] in directives[media], media
    page.goto(stack.api_url + "/")
    page.get_by_label("API key").fill(new_key(stack, "browser"))
    page.get_by_role("button", name="Use key").click()
    upload_video(page, test_data / MEAD)
    page.get_by_role("radio", name="sad", exact=True).check()
    page.get_by_role("button", name="Edit the video").click()
    sync_api.expect(page.locator("#job-line")).to_have_attribute("data-state", "succeeded", timeout=240_000)
    page.wait_for_function("() => document.getElementById('after').readyState >= 2", timeout=30_000)
    assert abs(page.locator("#after").evaluate("v => v.duration") - probe(test_data / MEAD).duration_s) < 0.04
    assert page.locator("#download").get_attribute("href").startswith(stack.env["CMET_S3_ENDPOINT_URL"])
    context.close()
    assert blocked == []


def test_the_wheel_ships_every_file_of_the_page() -> None:
    import fnmatch
    import tomllib

    root = Path(__file__).parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service"]
    files = [p.relative_to(root / "service").as_posix() for p in (root / "service" / "web").iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns) for f in files), files


def test_a_contact_sheet_and_a_clip_preview_come_back(page: sync_api.Page, served: Served, test_data: Path) -> None:
    """See before paying: the sheet's cells load and pick the edit's emotion; a clip preview plays."""
    expect = sync_api.expect
    sign_in(page, served, served.keys["alice"])
    upload_video(page, test_data / MEAD)
    expect(page.locator("#preview-panel")).to_be_visible()
    rows = page.get_by_role("group", name="Emotions of the sheet")
    rows.get_by_label("happy", exact=True).check()
    rows.get_by_label("sad", exact=True).check()
    page.get_by_label("Intensities").fill("0.5, 1.5")
    page.get_by_role("button", name="Make a contact sheet").click()
    cells = page.get_by_role("group", name="Contact sheet cells").get_by_role("button")
    expect(cells).to_have_count(4, timeout=120_000)
    expect(page.locator("#sheet-status")).to_contain_text("4 cells")
    page.get_by_text("The labelled sheet").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#sheet-cells img, #sheet-image')]"
        ".every((i) => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )
    sheet, cell = page.evaluate(
        "() => ['sheet-image', 'sheet-cells'].map((id) => document.getElementById(id))"
        ".map((e) => (e.tagName === 'IMG' ? e : e.querySelector('img'))).map((i) => [i.naturalWidth, i.naturalHeight])"
    )
    assert sheet[0] >= 2 * cell[0] and sheet[1] >= 2 * cell[1], (sheet, cell)  # a 2 x 2 grid of the frame
    page.screenshot(path=served.shots / "12-contact-sheet.png", full_page=True)
    page.get_by_role("button", name="Use sad at 1.50").click()
    expect(page.get_by_role("radio", name="sad", exact=True)).to_be_checked()
    expect(page.get_by_label("Intensity", exact=True)).to_have_value("1.5")

    page.get_by_label("From (s)").fill("0.5")
    page.get_by_label("Length (s)").fill("1")
    page.get_by_role("button", name="Preview a clip").click()
    clip = page.locator("#clip-video")
    expect(clip).to_be_visible(timeout=180_000)
    page.wait_for_function("() => document.getElementById('clip-video').readyState >= 2", timeout=30_000)
    assert abs(clip.evaluate("v => v.duration") - 1.0) < 0.1
    expect(page.locator("#clip-status")).to_contain_text("1.00 s from 0.50 s")
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("#preview-panel").screenshot(path=served.shots / "13-previews-phone.png")


def test_a_timeline_is_built_on_the_strip_and_the_voice_followed(
    page: sync_api.Page, served: Served, test_data: Path, tmp_path: Path
) -> None:
    """Three segments made with the keyboard and the mouse are the job's timeline; "follow the voice"
    submits from_audio, and the segments it found go back into the strip."""
    expect = sync_api.expect
    alice = {"Authorization": f"Bearer {served.keys['alice']}"}
    sign_in(page, served, served.keys["alice"])
    upload_video(page, test_data / MEAD)
    page.get_by_label("a timeline").check()
    expect(page.locator("#timeline-panel")).to_be_visible()
    expect(page.get_by_label("Intensity", exact=True)).to_be_hidden()
    for _ in range(3):
        page.get_by_role("button", name="Add segment").click()
    expect(page.locator("#strip .seg")).to_have_count(3)

    end = page.get_by_role("slider", name="End of segment 3")
    end.focus()
    for key in ("Shift+ArrowRight", "ArrowRight", "ArrowRight"):
        page.keyboard.press(key)
    expect(end).to_have_attribute("aria-valuenow", "5.7")
    start = page.get_by_role("slider", name="Start of segment 2")
    strip, handle = page.locator("#strip").bounding_box(), start.bounding_box()
    assert strip and handle
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(strip["x"] + strip["width"] * 2.0 / 7.0, handle["y"], steps=6)
    page.mouse.up()
    dragged = float(start.get_attribute("aria-valuenow") or "nan")
    assert abs(dragged - 2.0) < 0.05, dragged
    page.get_by_role("button", name=re.compile("^Segment 2:")).click()
    page.get_by_label("Segment emotion").select_option("sad")
    page.get_by_role("button", name=re.compile("^Segment 3:")).click()
    page.get_by_label("Segment emotion").select_option("angry")
    page.get_by_label("Segment intensity").fill("1.5")
    page.get_by_label("Transition (s)").fill("0.2")
    page.get_by_text("More options").click()
    page.get_by_label("HD face").select_option("off")
    page.get_by_label("Strength").fill("0.5")
    page.screenshot(path=served.shots / "14-timeline.png", full_page=True)
    with page.expect_request(lambda r: r.url.endswith("/v1/edits") and r.method == "POST") as sent:
        page.get_by_role("button", name="Edit the video").click()
    sent_fields = {"enhance": "off", "enhance_strength": 0.5, "gaze": "keep", "blink": "keep"}  # eyes: as the video
    assert sent_fields.items() <= sent.value.post_data_json.items()
    expect(page.locator("#job-line")).to_contain_text("timeline of 3", timeout=30_000)
    job_id = page.url.split("#job=")[1]
    applied = httpx.get(f"{served.url}/v1/edits/{job_id}", headers=alice).json()["timeline"]
    assert applied["transition_s"] == 0.2
    assert [(s["start_s"], s["end_s"], s["target"], s["intensity"]) for s in applied["segments"]] == [
        (0.0, 1.5, "happy", 1.0),
        (dragged, 3.0, "sad", 1.0),
        (3.0, 5.7, "angry", 1.5),
    ]
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#job-line")).to_have_attribute("data-state", "canceled", timeout=60_000)
    page.set_viewport_size({"width": 390, "height": 844})
    modes, panel = page.locator("#mode-set").bounding_box(), page.locator("#timeline-panel").bounding_box()
    assert modes and panel and 0 <= panel["y"] - (modes["y"] + modes["height"]) < 40  # right under the choice
    box, strip = page.locator("#emotion-panel").bounding_box(), page.locator("#strip").bounding_box()
    assert box and strip and box["x"] <= strip["x"] and strip["x"] + strip["width"] <= box["x"] + box["width"]
    assert page.locator("#emotion-panel").evaluate("p => p.scrollWidth <= p.clientWidth")  # nothing overflows
    page.locator("#emotion-panel").screenshot(path=served.shots / "15-timeline-phone.png")
    page.set_viewport_size({"width": 1280, "height": 800})

    page.set_input_files("#video-file", {"name": "x.txt", "mimeType": "text/plain", "buffer": b"not a video\n" * 50})
    expect(page.locator("#video-error")).to_contain_text("(not_media)", timeout=30_000)
    expect(page.locator("#strip .seg")).to_have_count(0)  # the failed video's timeline is gone

    # the canceled edit may still hold the worker until its next stage, so the probe can come late
    page.set_input_files("#video-file", str(write_sample_clip(tmp_path / "talk.mp4", seconds=1.5)))
    expect(page.locator("#video-status")).to_contain_text(re.compile("may submit|ready to edit"), timeout=60_000)
    page.get_by_role("switch", name="Follow the voice").check()
    expect(page.locator("#mode-set")).to_be_hidden()
    page.get_by_label("compare with the speaker's calmest moment").check()
    page.locator("#emotion-panel").screenshot(path=served.shots / "16-follow-the-voice.png")
    page.get_by_role("button", name="Edit the video").click()
    expect(page.locator("#job-line")).to_contain_text("from_audio", timeout=30_000)
    job = httpx.get(f"{served.url}/v1/edits/{page.url.split('#job=')[1]}", headers=alice).json()
    assert job["emotion"] == "from_audio" and job["timeline"] is None
    expect(page.locator("#job-line")).to_have_attribute("data-state", "succeeded", timeout=240_000)
    found = page.locator("#found-list li")
    expect(found.first).to_be_visible()
    count = found.count()
    assert count >= 1 and page.locator("#found-strip .seg").count() == count
    page.locator("#watch-panel").screenshot(path=served.shots / "17-found-in-the-voice.png")
    page.get_by_role("button", name="Edit these as a timeline").click()
    expect(page.get_by_label("a timeline")).to_be_checked()
    expect(page.get_by_role("switch", name="Follow the voice")).not_to_be_checked()
    expect(page.locator("#strip .seg")).to_have_count(count)
    expect(page.get_by_role("slider", name="Start of segment 1")).to_be_focused()
    page.locator("#emotion-panel").screenshot(path=served.shots / "18-found-as-timeline.png")


def test_two_faces_get_their_own_emotions_by_clicking_them(
    page: sync_api.Page, served: Served, test_data: Path, tmp_path: Path
) -> None:
    expect = sync_api.expect
    clip = make_two_face_clip(test_data, tmp_path / "two.mp4", turn_s=0.8)
    sign_in(page, served, served.keys["bob"])
    page.set_input_files("#video-file", str(clip))
    expect(page.locator("#video-info")).to_be_visible(timeout=90_000)
    picks = page.locator(".face-pick")
    expect(picks).to_have_count(2)
    left, right = (picks.nth(i).bounding_box() for i in (0, 1))
    assert left and right and left["x"] + left["width"] <= right["x"]  # in their places, from the left
    page.get_by_role("button", name="Face 2 from the left").click()
    page.get_by_label("Emotion of face 2").select_option("sad")
    page.get_by_role("button", name="Face 1 from the left").click()
    page.get_by_label("Emotion of face 1").select_option("happy")
    page.get_by_label("Intensity of face 1").fill("0.5")
    expect(page.locator("#submit")).to_be_enabled()  # no emotion of step 2 needed: each face has its own
    page.screenshot(path=served.shots / "faces-chosen.png", full_page=True)
    page.get_by_role("button", name="Edit the video").click()
    expect(page.locator("#job-line")).to_contain_text("face 1: happy, face 2: sad", timeout=30_000)
    expect(page.locator("#job-line")).to_have_attribute("data-state", "succeeded", timeout=240_000)
