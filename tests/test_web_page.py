"""The web page at / in a real browser (headless Chromium through selenium), against a real `mmtools serve`.

One server for the module, as users start it beyond loopback: `--http 0.0.0.0:PORT --token T`, with a tiny model
and an index of real photos with Vietnamese captions; one browser. The page asks for the token once; the tests
then run in order, in one tab, as a user would go: search, open a photo, more like this, search by image, tag.
A machine without Chromium skips these tests, except in CI (CI=true), where that is a failure.
Set MMTOOLS_WEB_SCREENSHOT=docs/web-page.png to write the README's screenshot.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from conftest import TEST_PHOTOS

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TOKEN = "web-test-token"
QUERY = "người đàn ông chơi bóng chày"
PHOTOS = 30
TAGGER_LABELS = ["wifi", "mát", "đỏ", "xanh"]


def no_browser(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}: CI must run the web-page tests (scripts/install-system.sh browser installs it)")
    pytest.skip(reason)


def photo_records(folder: Path) -> list[dict]:
    """Records of real photos (absolute paths, Vietnamese captions; some with tags and OCR text), and last one
    whose file is deleted once indexed (from tests/data/vi-photos: the captioned photos whose image it holds)."""
    folder.mkdir()
    rows = [row for row in map(orjson.loads, (TEST_PHOTOS / "captions.jsonl").read_bytes().splitlines())
            if (TEST_PHOTOS / row["path"]).is_file()][:PHOTOS]
    assert len(rows) == PHOTOS, f"{TEST_PHOTOS} holds fewer than {PHOTOS} photos"
    records = []
    for i, row in enumerate(rows):
        target = folder / f"photo{i:02d}.jpg"
        shutil.copy(TEST_PHOTOS / row["path"], target)
        records.append({"path": str(target), "caption": row["captions"][0]})
    records[0]["tags"] = ["thể thao", "ngoài trời"]
    records[0]["ocr_text"] = "Sân bóng chày"
    gone = folder / "gone.jpg"
    shutil.copy(folder / "photo01.jpg", gone)
    records.append({"path": str(gone), "caption": "Ảnh đã bị xoá"})
    return records


def build_tagger(tagging_data, folder: Path) -> Path:
    """A tiny late-fusion tagger (tags from a text alone or with a photo) with every threshold at 0, so the
    form shows all its labels with their confidences."""
    from mmtools.tag.model import TaggerModel, TaggerSpec
    from mmtools.tag.towers import load_towers, save_tagger, spec_for

    towers = load_towers("both", text_model=str(tagging_data["text_tower"]),
                         image_model=str(tagging_data["image_tower"]))
    spec = spec_for(towers, TaggerSpec(labels=TAGGER_LABELS, modality="both", fusion="late", fusion_dim=32,
                                       hidden_dim=32, attention_heads=2))
    save_tagger(folder, TaggerModel(spec, towers.text_model, towers.image_model).eval(), towers,
                {label: 0.0 for label in TAGGER_LABELS})
    return folder


def video_moments(path: Path, encoder) -> list[dict]:
    """The embedded keyframes of a generated 3.6 s video of three shots (`keyframes | embed-images`)."""
    from mmtools.embed import embed_images
    from mmtools.images import discover_images
    from mmtools.video.sources import with_video_frames
    from mmtools.video.synthetic import write_video

    write_video(path, [30, 30, 30])
    return list(embed_images(with_video_frames(discover_images([str(path)])), encoder))


@pytest.fixture(scope="module")
def site(tmp_path_factory, siglip_dir, tagging_data):
    """`mmtools serve --http 0.0.0.0:PORT --token` over two indexes of the photos, one of a video's moments,
    and a trained tagger (`-m TAGGER_DIR`, mixed with the indexes' retrieval model); yields its loopback
    address."""
    from mmtools.embed import embed_images
    from mmtools.images import discover_images
    from mmtools.index import index_records
    from mmtools.models import load_encoder

    root = tmp_path_factory.mktemp("site")
    records = photo_records(root / "photos")
    (root / "photos.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    embedded = list(embed_images(discover_images([str(root / "photos.jsonl")]), load_encoder(siglip_dir, "cpu")))
    index_records(embedded[:-1], root / "idx.faiss")
    index_records(embedded[-4:], root / "more.faiss")  # a second index, holding the photo that goes missing
    index_records(video_moments(root / "clip.mp4", load_encoder(siglip_dir, "cpu")), root / "video.faiss")
    Path(records[-1]["path"]).unlink()
    extra = ["-m", str(build_tagger(tagging_data, root / "tagger"))]
    log = open(root / "serve.log", "w+")
    process = subprocess.Popen(
        [str(BIN / "mmtools"), "serve", "--socket", str(root / "s.sock"), "--http", "0.0.0.0:0", "--token", TOKEN,
         "-i", str(root / "idx.faiss"), "-i", str(root / "more.faiss"), "-i", str(root / "video.faiss"),
         "--device", "cpu", *extra],
        cwd=root, stdout=subprocess.DEVNULL, stderr=log,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"})
    try:
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
            found = re.search(r"http://[^ ]+:(\d+)", (root / "serve.log").read_text())
            port = found and found.group(1)
        assert port, (root / "serve.log").read_text()
        yield {"url": f"http://127.0.0.1:{port}", "root": root, "records": records, "tagger": root / "tagger"}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.close()


@pytest.fixture(scope="module")
def browser(site):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        no_browser("selenium is not installed (pip install -e '.[dev]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        no_browser("chromium and chromedriver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--lang=vi", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
    except Exception as exc:  # noqa: BLE001 - any failure to start is "no browser"
        no_browser(f"cannot start headless Chromium ({exc})")
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


# --------------------------------------------------------------------------------------------- helpers


def wait_for(driver, condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; page: {driver.current_url}\n"
                         f"{driver.execute_script('return document.body.innerText')[:1500]}")


def console_errors(driver) -> list[str]:
    """What the page logged as errors since the last call (failed loads, exceptions, CSP refusals)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def loaded_thumbnails(driver) -> list[dict]:
    return driver.execute_script("""
        return [...document.querySelectorAll('#results img.thumb')].map(img => ({
            src: img.src, alt: img.alt, width: img.naturalWidth, missing: img.classList.contains('missing'),
            complete: img.complete}));""")


def wait_for_thumbnails(driver, at_least):
    def ready():
        images = loaded_thumbnails(driver)
        done = [i for i in images if i["complete"] and i["src"].startswith(("blob:", "http"))]
        return images if len(images) >= at_least and len(done) == len(images) else None
    return wait_for(driver, ready, what=f"{at_least} thumbnails")


def enter_token(driver, token) -> str:
    """Types ``token`` into the page's token dialog; returns what the dialog said first."""
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda: driver.execute_script("return document.querySelector('#token-dialog').open"),
             what="the token dialog")
    said = driver.find_element(By.ID, "token-error").text
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    return said


# ----------------------------------------------------------------------------------------------- tests


def test_the_page_asks_for_the_token_once_and_a_vietnamese_query_shows_loaded_thumbnails(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(site["url"] + "/")
    assert enter_token(browser, "not-the-token") == ""
    # The wrong token is refused at once (the served indexes in /health need it): the page asks again,
    # saying so, then goes on.
    assert "không đúng" in enter_token(browser, TOKEN)
    wait_for(browser, lambda: browser.execute_script("return document.body.dataset.ready === 'true'"),
             what="the page to start")
    box = browser.find_element(By.ID, "q")
    box.send_keys(QUERY, Keys.ENTER)  # the keyboard submits
    thumbs = wait_for_thumbnails(browser, 5)
    loaded = [t for t in thumbs if t["width"] > 0 and t["src"].startswith("blob:") and not t["missing"]]
    assert len(loaded) >= 5, thumbs
    assert all(t["alt"] for t in thumbs)  # captions as alt text
    assert browser.execute_script("return sessionStorage.getItem('mmtools-token')") == TOKEN
    assert QUERY in browser.find_element(By.ID, "search-status").text
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    # each number says what it is: a similarity, a BM25 relevance, or a fusion value
    assert all(re.search(r"(tương đồng|BM25|điểm hợp nhất) -?\d+\.\d{3}", card.text) for card in cards)
    # Only the refused token's request failed (a 401); nothing else went wrong.
    errors = console_errors(browser)
    assert all("401" in message for message in errors), errors
    shot = site["root"] / "web-page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("MMTOOLS_WEB_SCREENSHOT"):  # 256 colours: a third of the bytes, reads the same
        from PIL import Image

        Image.open(shot).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(
            os.environ["MMTOOLS_WEB_SCREENSHOT"], optimize=True)


def test_the_url_holds_the_query_so_a_reload_shows_the_same_results(site, browser):
    from selenium.webdriver.common.by import By

    assert "q=" in browser.current_url
    before = [t["alt"] for t in loaded_thumbnails(browser)]
    browser.refresh()
    thumbs = wait_for_thumbnails(browser, 5)
    assert [t["alt"] for t in thumbs] == before and all(t["width"] > 0 for t in thumbs)
    assert browser.find_element(By.ID, "q").get_attribute("value") == QUERY
    assert not browser.execute_script("return document.querySelector('#token-dialog').open")  # asked once
    assert console_errors(browser) == []


def test_a_result_opens_the_photo_and_offers_more_like_this(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    first = browser.find_element(By.CSS_SELECTOR, "#results .card")
    caption = browser.find_element(By.CSS_SELECTOR, "#results .card .caption").text
    first.send_keys(Keys.ENTER)  # a card is a button: the keyboard opens it
    wait_for(browser, lambda: browser.execute_script(
        "const i = document.querySelector('#viewer-image'); return document.querySelector('#viewer').open && "
        "i.complete && i.naturalWidth > 0"), what="the photo")
    assert caption in browser.find_element(By.ID, "viewer-meta").text
    browser.find_element(By.ID, "more-like").click()
    wait_for(browser, lambda: "like=" in browser.current_url, what="a more-like-this URL")
    thumbs = wait_for_thumbnails(browser, 5)
    assert sum(t["width"] > 0 for t in thumbs) >= 5
    assert console_errors(browser) == []


def test_search_by_an_uploaded_photo_finds_that_photo_first(site, browser):
    from selenium.webdriver.common.by import By

    photo = site["records"][5]
    browser.get(site["url"] + "/")
    browser.find_element(By.ID, "search-image").send_keys(photo["path"])
    wait_for(browser, lambda: "photo05" in browser.find_element(By.ID, "search-status").text,
             what="the image search")
    thumbs = wait_for_thumbnails(browser, 5)
    assert thumbs[0]["alt"] == photo["caption"] and thumbs[0]["width"] > 0
    assert "1.000" in browser.find_element(By.CSS_SELECTOR, "#results .card .score").text
    assert console_errors(browser) == []


def test_the_tag_form_shows_the_preview_then_the_features(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.find_element(By.ID, "tab-tag").click()
    assert "tab=tag" in browser.current_url
    browser.find_element(By.ID, "description").send_keys("Phòng trọ rộng, có wifi, gần chợ")
    browser.find_element(By.ID, "tag-image").send_keys(site["records"][2]["path"])
    wait_for(browser, lambda: browser.execute_script(
        "const p = document.querySelector('#tag-preview'); return !p.hidden && p.complete && p.naturalWidth > 0"),
        what="the preview")
    zero_shot = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "tagger")).options
                 if o.get_attribute("value").startswith("zero-shot:")]
    Select(browser.find_element(By.ID, "tagger")).select_by_value(zero_shot[0])
    labels = browser.find_element(By.ID, "labels")
    labels.clear()
    labels.send_keys("phòng trọ, wifi, xe máy")
    browser.find_element(By.CSS_SELECTOR, "#tag-form button[type=submit]").click()
    features = wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#features .feature"),
                        what="the features")
    assert sorted(f.find_element(By.CSS_SELECTOR, ".label").text for f in features) == ["phòng trọ", "wifi", "xe máy"]
    widths = browser.execute_script(
        "return [...document.querySelectorAll('#features .bar span')].map(s => s.style.width)")
    assert all(w.endswith("%") for w in widths)
    assert "văn bản và ảnh" in browser.find_element(By.ID, "tag-status").text
    browser.save_screenshot(str(site["root"] / "tag-form.png"))
    assert console_errors(browser) == []


def test_the_tag_form_with_a_trained_tagger(site, browser):
    """The design's form over POST /api/extract-features: choose the tagger, type a description, pick a photo,
    see the preview, then the tagger's features with confidence bars."""
    import urllib.request

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    health = urllib.request.Request(site["url"] + "/health", headers={"Authorization": f"Bearer {TOKEN}"})
    served = orjson.loads(urllib.request.urlopen(health, timeout=30).read())["served_models"]
    assert [(m["name"], m["labels"]) for m in served if m["kind"] == "tagger"] == [(str(site["tagger"]),
                                                                                   TAGGER_LABELS)]
    browser.get(site["url"] + "/?tab=tag")
    started = "return document.body.dataset.ready === 'true' || document.querySelector('#token-dialog').open"
    wait_for(browser, lambda: browser.execute_script(started), what="the page to start")
    if browser.execute_script("return document.querySelector('#token-dialog').open"):  # run on its own
        enter_token(browser, TOKEN)
    wait_for(browser, lambda: browser.execute_script("return document.body.dataset.ready === 'true'"),
             what="the page to start")
    chooser = Select(browser.find_element(By.ID, "tagger"))
    taggers = [o.get_attribute("value") for o in chooser.options if o.get_attribute("value").startswith("tagger:")]
    assert taggers == [f"tagger:{site['tagger']}"], "the page lists the trained tagger of /health"
    chooser.select_by_value(taggers[0])
    assert not browser.find_element(By.ID, "labels").is_displayed()  # a tagger has its own labels
    description = browser.find_element(By.ID, "description")
    description.clear()
    description.send_keys("Phòng trọ mát, có wifi, sơn màu xanh")
    browser.find_element(By.ID, "tag-image").send_keys(site["records"][3]["path"])
    wait_for(browser, lambda: browser.execute_script(
        "const p = document.querySelector('#tag-preview'); return !p.hidden && p.complete && p.naturalWidth > 0"),
        what="the preview")
    assert browser.find_element(By.ID, "tag-file-name").text == "photo03.jpg"
    browser.find_element(By.CSS_SELECTOR, "#tag-form button[type=submit]").click()
    features = wait_for(browser, lambda: "văn bản và ảnh" in browser.find_element(By.ID, "tag-status").text
                        and browser.find_elements(By.CSS_SELECTOR, "#features .feature"),
                        what="the tagger's features")
    assert sorted(f.find_element(By.CSS_SELECTOR, ".label").text for f in features) == sorted(TAGGER_LABELS)
    bars = browser.execute_script("""return [...document.querySelectorAll('#features .feature')].map(f => ({
        width: f.querySelector('.bar span').style.width, now: Number(f.querySelector('.bar').ariaValueNow),
        shown: Number(f.querySelector('.value').textContent)}));""")
    for bar in bars:  # each bar as wide as its confidence, which is a probability
        # aria-valuenow is the confidence to 3 places, the width the whole confidence in percent, rounded
        assert 0 <= bar["now"] <= 1 and bar["width"].endswith("%")
        assert abs(float(bar["width"][:-1]) - bar["now"] * 100) <= 0.55
        assert abs(bar["shown"] - bar["now"]) <= 0.005 + 1e-9  # shown to 2 places
    assert [b["now"] for b in bars] == sorted((b["now"] for b in bars), reverse=True)  # best first
    assert console_errors(browser) == []


def test_the_search_mode_and_filters_are_in_the_url_and_an_unaccented_query_is_restored(site, browser):
    from urllib.parse import urlencode

    from selenium.webdriver.common.by import By

    browser.get(site["url"] + "/?" + urlencode({"q": "nguoi choi bong chay", "mode": "hybrid",
                                                "where": "tags=thể thao"}))
    thumbs = wait_for_thumbnails(browser, 1)
    assert [t["alt"] for t in thumbs] == [site["records"][0]["caption"]]  # the one record with that tag
    assert browser.find_element(By.ID, "mode").get_attribute("value") == "hybrid"
    assert browser.find_element(By.ID, "where").get_attribute("value") == "tags=thể thao"
    status = browser.find_element(By.ID, "search-status").text
    assert "nguoi choi bong chay" in status and "đã thêm dấu: “người chơi bóng chày”" in status, status
    assert console_errors(browser) == []


def test_keyword_mode_switches_the_minimum_similarity_off_and_searches_without_it(site, browser):
    from urllib.parse import urlencode

    from selenium.webdriver.common.by import By

    browser.get(site["url"] + "/?" + urlencode({"q": "sân bóng chày", "mode": "keyword", "min": "0.5"}))
    thumbs = wait_for_thumbnails(browser, 1)  # the server would refuse min_score in keyword mode (HTTP 400)
    assert thumbs[0]["alt"] == site["records"][0]["caption"]  # its OCR text holds the three words
    assert browser.execute_script("return document.querySelector('#error').hidden")
    field = browser.find_element(By.ID, "min-score")
    assert not field.is_enabled() and field.get_attribute("value") == "0.5"
    browser.execute_script("const m = document.querySelector('#mode'); m.value = 'hybrid';"
                           "m.dispatchEvent(new Event('change'))")
    assert field.is_enabled()
    assert console_errors(browser) == []


def test_english_and_a_phone_sized_screen(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.set_window_size(390, 844)
    try:
        browser.get(site["url"] + "/?q=" + QUERY)
        thumbs = wait_for_thumbnails(browser, 5)
        assert sum(t["width"] > 0 for t in thumbs) >= 5
        Select(browser.find_element(By.ID, "lang")).select_by_value("en")
        assert browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").text == "Search"
        assert browser.execute_script("return document.documentElement.lang") == "en"
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        columns = browser.execute_script(
            "return getComputedStyle(document.querySelector('#results')).gridTemplateColumns.split(' ').length")
        assert columns == 2
        assert console_errors(browser) == []
    finally:
        browser.execute_script("localStorage.removeItem('mmtools-lang')")
        browser.set_window_size(1280, 900)


def test_the_index_chooser_and_a_missing_photos_placeholder(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(site["url"] + "/")
    chooser = Select(browser.find_element(By.ID, "index"))
    wait_for(browser, lambda: len(chooser.options) == 3, what="three indexes to choose from")
    browser.find_element(By.CSS_SELECTOR, ".options summary").click()
    chooser.select_by_value(str(site["root"] / "more.faiss"))
    browser.find_element(By.ID, "q").send_keys(QUERY)
    browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
    wait_for(browser, lambda: "more.faiss" in browser.current_url, what="the index in the URL")
    thumbs = wait_for(browser, lambda: [t for t in wait_for_thumbnails(browser, 4) if t["missing"]] and
                      wait_for_thumbnails(browser, 4), what="the placeholder")
    missing = [t for t in thumbs if t["missing"]]
    assert len(missing) == 1 and missing[0]["src"].endswith("/static/missing.svg") and missing[0]["width"] > 0
    assert missing[0]["alt"].startswith("Không còn tệp ảnh")
    assert sum(t["width"] > 0 and not t["missing"] for t in thumbs) == 3
    errors = console_errors(browser)  # the missing photo's 404, and nothing else
    assert len(errors) == 1 and "404" in errors[0] and "gone.jpg" in errors[0], errors


def test_the_page_reads_both_shapes_of_health_and_shows_a_videos_moment(site, browser):
    """/health as it is, and as the `serve` branch extends it (a list of models with their kinds)."""
    old = {"indexes": {"/data/a.faiss": {"records": 3, "model": "m1"}}, "models": {"m1": {"dim": 32}}}
    new = {"indexes": [{"path": "/data/a.faiss", "records": 3, "model": "m1"}],
           "models": [{"name": "m1", "kind": "retrieval"}, {"name": "/t/tagger", "kind": "tagger"}],
           "model_loaded": True}
    for health, models in [(old, [{"name": "m1", "kind": "retrieval"}]),
                           (new, [{"name": "m1", "kind": "retrieval"}, {"name": "/t/tagger", "kind": "tagger"}])]:
        served = browser.execute_script("return readHealth(arguments[0])", health)
        assert served["indexes"] == [{"value": "/data/a.faiss", "name": "a", "records": 3, "model": "m1"}]
        assert served["models"] == models
    shown = browser.execute_script(
        "const box = document.createElement('div');"
        "describe({score: 0.5, time: 3723.4, caption: 'Cảnh quay', tags: [{label: 'phố'}], ocr_text: 'Phở 24'}, box, true);"
        "return box.innerText;")
    assert "lúc 1:02:03" in shown and "Cảnh quay" in shown and "phố" in shown and "Phở 24" in shown
    assert console_errors(browser) == []


def test_a_video_moment_shows_its_frame_and_time_and_plays_from_that_moment(site, browser):
    from urllib.parse import urlencode

    from selenium.webdriver.common.by import By

    browser.get(site["url"] + "/?" + urlencode({"q": "cảnh quay", "index": str(site["root"] / "video.faiss")}))
    thumbs = wait_for_thumbnails(browser, 3)
    assert len(thumbs) == 3 and all(t["width"] > 0 and not t["missing"] for t in thumbs)  # the keyframes
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    labels = [card.find_element(By.CSS_SELECTOR, ".play").text for card in cards]
    assert all(re.fullmatch(r"▶ 0:0\d", label) for label in labels), labels
    times = browser.execute_script("return state.lastHits.map(hit => hit.time)")
    last = max(range(3), key=lambda i: times[i])  # the last shot's moment: well inside the video
    start = times[last]
    assert start > 2
    cards[last].click()
    wait_for(browser, lambda: browser.execute_script(
        "const v = document.querySelector('#viewer-video'); return document.querySelector('#viewer').open && "
        "!v.hidden && v.readyState >= 2"), what="the player")
    shown = browser.execute_script("""const v = document.querySelector('#viewer-video');
        return {src: v.currentSrc, time: v.currentTime, image: !document.querySelector('#viewer-image').hidden};""")
    assert "/video/" in shown["src"] and "sig=" in shown["src"] and f"#t={start:.3f}" in shown["src"]
    assert not shown["image"] and start - 0.1 <= shown["time"] <= start + 1.0, (shown, start)
    browser.find_element(By.ID, "viewer-close").click()
    assert browser.execute_script("return document.querySelector('#viewer-video').paused")
    assert console_errors(browser) == []


def test_did_you_mean_offers_the_other_restorations_and_a_click_searches_one(site, browser):
    """Where search hedged over several restorations (hits' query_alternatives), the page offers the ones it
    did not show as buttons; the server's answers are wrapped here to carry them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(site["url"] + "/")
    asked = "return document.querySelector('#token-dialog').open"
    wait_for(browser, lambda: browser.execute_script(f"return document.body.dataset.ready === 'true' || ({asked[7:]})"),
             what="the page to start or ask for the token")
    if browser.execute_script(asked):  # run on its own, before the test that types the token
        enter_token(browser, TOKEN)
    wait_for(browser, lambda: browser.execute_script("return document.body.dataset.ready === 'true'"),
             what="the page to start")
    browser.execute_script("""
        const real = window.fetch;
        window.fetch = async (url, options) => {
          const response = await real(url, options);
          if (!String(url).includes('/search') || !response.ok) return response;
          const body = await response.json();
          for (const hit of body.hits || []) {
            hit.query_restored = 'người chơi bóng chày';
            hit.query_alternatives = [['người chơi bóng chày', 0.7], {text: 'người chơi bóng chạy', weight: 0.3}];
          }
          return new Response(JSON.stringify(body), {status: 200, headers: {'content-type': 'application/json'}});
        };""")
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys("nguoi choi bong chay", Keys.ENTER)
    wait_for(browser, lambda: browser.find_element(By.ID, "did-you-mean").is_displayed(), what="did you mean")
    offered = browser.find_elements(By.CSS_SELECTOR, "#did-you-mean button")
    assert [b.text for b in offered] == ["người chơi bóng chạy"]  # the one searched is not offered again
    assert "Có phải bạn muốn tìm" in browser.find_element(By.ID, "did-you-mean").text
    offered[0].click()
    wait_for(browser, lambda: "người chơi bóng chạy" in browser.find_element(By.ID, "search-status").text,
             what="the alternative searched")
    assert browser.find_element(By.ID, "q").get_attribute("value") == "người chơi bóng chạy"
    assert console_errors(browser) == []
