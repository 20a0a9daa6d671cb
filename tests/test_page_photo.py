"""Bring your own digit in a real browser: a photo or picture file through the whole page (issue 26).

The photos are benchmarks/photoset.py's: digits written on synthetic paper, lit unevenly, blurred and
saved as JPEG.  Each is given to the page as a visitor would (the file input `data-part="upload"`, or a
file dropped on the pad), scaled down by the page, sent as a `photo` message, and read off the page.
"""

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Browser
from test_page import (
    WAIT_MS,
    Strokes,
    Visit,
    browser,
    click_neuron,
    draw_with_mouse,
    golden,
    ink_pixels,
    open_page,
    server,
    settle,
    strongest_hidden,
)

from benchmarks.photoset import make_photo, photo_set
from model_store.datasets import load_embedded, mnist_dir_from_env
from support import decode_array

pytestmark = pytest.mark.browser
__all__ = ["browser", "golden", "server"]  # module fixtures shared with test_page

# Official test digits read through the page (MNIST_DIR): the goal is >= 90 %.
PAGE_PHOTOS = 150


def embedded_digit(label: int, nth: int = 0) -> np.ndarray:
    images, labels = load_embedded()
    return np.uint8(np.round(images[int(np.flatnonzero(labels == label)[nth])] * 255.0))


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture
def laptop(browser: Browser, server: str) -> Iterator[Visit]:
    opened = open_page(browser, server, 1366, 768)
    yield opened
    opened.context.close()
    assert not [e for e in opened.errors if "favicon" not in e and "status of 503" not in e], opened.errors


def upload(visit: Visit, path: str) -> dict:
    """Give the page ``path`` through its upload input; the frame answering the photo message."""
    before = len(visit.wire.sent)
    visit.page.set_input_files("[data-part=upload]", path)
    sent = visit.wire.wait_sent(lambda m: m["type"] == "photo", after=before)
    answer = visit.wire.wait_received(lambda m: (m["type"] == "frame" and (m["seq"] or 0) >= sent["seq"])
                                      or (m["type"] == "error" and m["seq"] == sent["seq"]))
    return answer


def test_a_photo_is_read_and_every_view_works_on_it(
        laptop: Visit, browser: Browser, server: str, tmp_path: Path) -> None:
    page, wire = laptop.page, laptop.wire
    # A phone photo at full size (3000 × 4000 px, ~1 MB): the page scales it to fit the message limit.
    big = Image.open(io.BytesIO(make_photo(embedded_digit(3), seed=11))).resize((3000, 4000))
    path = write(tmp_path, "IMG_0001.jpg", jpeg(big))
    assert Path(path).stat().st_size > 65536
    frame = upload(laptop, path)
    assert frame["type"] == "frame" and frame["prediction"] == 3
    sent = next(m for m in reversed(wire.sent) if m["type"] == "photo")
    assert len(orjson.dumps(sent)) <= wire.received[0]["limits"]["max_message_bytes"]
    shown = settle(laptop)
    assert page.locator("#predicted").inner_text() == "3"
    assert ink_pixels(page) > 0  # the photo is on the pad
    assert page.locator("#replay").is_disabled()  # a photo has no strokes to replay
    # A hidden neuron's CRP map and the comparison, on the photo.
    j = strongest_hidden(shown)
    click_neuron(page, "hidden", j)
    crp = wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j and m["mode"] == "crp")
    assert crp["input"]["data"] == frame["input"]["data"]
    settle(laptop)
    # The share link carries the 28 × 28 input: elsewhere the same input, reading and neuron.
    page.click("#share")
    page.wait_for_function("() => document.getElementById('share-link').value.includes('#v=1')", timeout=WAIT_MS)
    link = page.locator("#share-link").input_value()
    assert "&p=" in link and len(link) <= 2000
    elsewhere = open_page(browser, link, 390, 844, touch=True)
    try:
        theirs = settle(elsewhere)
        assert theirs["input"]["data"] == frame["input"]["data"] and theirs["hidden"] == j
        assert elsewhere.page.locator("#predicted").inner_text() == "3"
        assert ink_pixels(elsewhere.page) > 0
    finally:
        elsewhere.context.close()
    # The data file holds the photo's input and opens again.
    with page.expect_download() as data:
        page.click("#export-json")
    saved = tmp_path / "digit.json"
    data.value.save_as(saved)
    document = orjson.loads(saved.read_bytes())
    assert base64.b64decode(document["photo"]) == base64.b64decode(frame["input"]["data"])
    reloaded = open_page(browser, server)
    try:
        reloaded.page.set_input_files("#import-json", str(saved))
        loaded = reloaded.wire.wait_received(lambda m: m["type"] == "frame" and m["prediction"] == 3)
        assert loaded["input"]["data"] == frame["input"]["data"]
    finally:
        reloaded.context.close()
    # Undo removes the photo in one step.
    page.click("#undo")
    blank = settle(laptop)
    assert decode_array(blank["input"]).max() == 0 and page.locator("#predicted").inner_text() == "–"


def test_a_picture_dropped_on_the_pad_is_read(laptop: Visit) -> None:
    data = base64.b64encode(make_photo(embedded_digit(7), seed=2)).decode()
    before = len(laptop.wire.sent)
    laptop.page.evaluate("""(data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], 'seven.jpg', { type: 'image/jpeg' }));
        const box = document.getElementById('pad').parentElement;
        box.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
        box.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", data)
    sent = laptop.wire.wait_sent(lambda m: m["type"] == "photo", after=before)
    frame = laptop.wire.frame_for(sent["seq"])
    assert frame["prediction"] == 7


def two_digits() -> bytes:
    sheet = Image.new("L", (480, 360), 225)
    draw = ImageDraw.Draw(sheet)
    for x in (80, 330):
        draw.line([(x, 100), (x + 20, 260)], fill=30, width=14)
    return jpeg(sheet)


@pytest.mark.parametrize("name, data, words", [
    ("notes.txt", b"a shopping list", "is not an image"),
    ("broken.png", b"\x89PNG\r\n\x1a\n not really", "could not be read as an image"),
    ("blank.jpg", jpeg(Image.new("L", (480, 640), 228)), "This photo could not be read: no ink found"),
    ("two.jpg", two_digits(), "This photo could not be read: 2 digits side by side"),
], ids=["text file", "broken image", "blank paper", "two digits"])
def test_a_bad_picture_says_why_and_the_drawing_stays(
        laptop: Visit, golden: dict[int, Strokes], tmp_path: Path, name: str, data: bytes, words: str) -> None:
    page = laptop.page
    draw_with_mouse(laptop, golden[4])
    before = settle(laptop)
    pixels = ink_pixels(page)
    page.set_input_files("[data-part=upload]", write(tmp_path, name, data))
    page.wait_for_function("(words) => document.getElementById('notice').textContent.includes(words)", arg=words,
                           timeout=WAIT_MS)
    assert page.locator("#notice").is_visible()
    # A refused photo is not waited for (the status line's frame seq counts it answered)...
    page.wait_for_function("() => { const d = document.getElementById('status').dataset;"
                           " return Number(d.frameSeq) >= Number(d.sentSeq); }", timeout=WAIT_MS)
    assert page.locator("#predicted").inner_text() == "4" and ink_pixels(page) == pixels  # the pad kept it...
    click_neuron(page, "output", 4)
    after = laptop.wire.wait_received(lambda m: m["type"] == "frame" and m["output"] == 4)
    assert after["input"]["data"] == before["input"]["data"]  # ...and so did the server


def test_on_a_phone_the_camera_is_one_tap_away_on_the_stage(browser: Browser, server: str) -> None:
    visit = open_page(browser, server, 390, 844, touch=True)
    try:
        upload_input = visit.page.locator("[data-part=upload]")
        assert upload_input.get_attribute("accept") == "image/*" and upload_input.get_attribute("capture") == ""
        label = visit.page.locator("label.upload").bounding_box()
        assert label is not None and label["height"] >= 44 and label["width"] >= 44
        assert label["y"] + label["height"] <= 844  # on the stage, without scrolling
    finally:
        visit.context.close()


@pytest.mark.skipif(mnist_dir_from_env() is None, reason="needs the official MNIST test set: set MNIST_DIR")
def test_photographed_official_test_digits_read_through_the_page(laptop: Visit, tmp_path: Path) -> None:
    correct = 0
    photos = photo_set(PAGE_PHOTOS, seed=2)
    for index, (data, label) in enumerate(photos):
        answer = upload(laptop, write(tmp_path, f"{index}.jpg", data))
        if answer["type"] == "frame":
            settle(laptop)
            correct += laptop.page.locator("#predicted").inner_text() == str(label)
    accuracy = correct / len(photos)
    print(f"\nphotographed official test digits read through the page: {correct}/{len(photos)} ({accuracy:.1%})")
    assert accuracy >= 0.9
