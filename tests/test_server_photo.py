"""A photo of a digit (server/photo.py, the `photo` message): prepared as MNIST was made, over a real WebSocket."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from benchmarks.photoset import make_photo, photo_set
from model_store import load_model
from model_store.datasets import load_embedded, mnist_dir_from_env
from model_store.strokes import Stroke
from server.photo import MAX_SIDE_PX, PhotoError, PhotoErrorCode, prepare_photo
from server.raster import COM_PX, rasterize
from support import Visitor, decode_array


def embedded_digit(label: int) -> np.ndarray:
    """The first embedded training digit of class ``label``, 28×28 uint8 (not the official test set)."""
    images, labels = load_embedded()
    return np.uint8(np.round(images[int(np.flatnonzero(labels == label)[0])] * 255.0))  # float32 in [0, 1]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def paper_with(texts: list[tuple[int, str]], size: tuple[int, int] = (480, 360)) -> bytes:
    """A light sheet with dark digits drawn as thick lines at the given x positions (a '1' as a bar)."""
    sheet = Image.new("L", size, 225)
    draw = ImageDraw.Draw(sheet)
    for x, _ in texts:
        draw.line([(x, 100), (x + 20, 260)], fill=30, width=14)
    return png(sheet)


def test_a_photo_becomes_an_mnist_digit_20_px_high_centred_by_its_mass() -> None:
    image = prepare_photo(make_photo(embedded_digit(7), seed=3))
    assert image.shape == (28, 28) and image.dtype == np.uint8
    rows, columns = np.flatnonzero(image.max(axis=1) > 25), np.flatnonzero(image.max(axis=0) > 25)
    assert 18 <= max(rows[-1] - rows[0], columns[-1] - columns[0]) + 1 <= 22  # the 20-px box, anti-aliased edges
    mass = image.astype(np.float64)
    ys, xs = np.mgrid[0:28, 0:28]
    assert abs((mass * ys).sum() / mass.sum() - COM_PX) < 0.6 and abs((mass * xs).sum() / mass.sum() - COM_PX) < 0.6
    assert image.max() == 255  # the strokes' core is full ink, as MNIST's


@pytest.mark.parametrize("data, code", [
    (b"this is text, not a picture", PhotoErrorCode.NOT_AN_IMAGE),
    (png(Image.new("L", (MAX_SIDE_PX + 1, 40), 230)), PhotoErrorCode.PHOTO_TOO_LARGE),
    (png(Image.new("L", (20000, 20000), 230)), PhotoErrorCode.PHOTO_TOO_LARGE),  # a 'bomb': small file, 400 MP
    (png(Image.new("L", (400, 300), 230)), PhotoErrorCode.NO_INK),
    (paper_with([(80, "1"), (330, "1")]), PhotoErrorCode.SEVERAL_DIGITS),
], ids=["text", "too wide", "bomb", "blank paper", "two digits"])
def test_bad_photos_are_refused_with_a_reason(data: bytes, code: PhotoErrorCode) -> None:
    with pytest.raises(PhotoError) as refused:
        prepare_photo(data)
    assert refused.value.code == code
    if code == PhotoErrorCode.PHOTO_TOO_LARGE:
        assert f"at most {MAX_SIDE_PX}" in refused.value.message


def test_a_blank_photo_of_a_real_sheet_has_no_ink() -> None:
    # The synthetic set's paper, lighting, shadow and noise without a digit: grain and shadow are not ink.
    blank = np.zeros((28, 28), dtype=np.uint8)
    for seed in range(6):
        with pytest.raises(PhotoError) as refused:
            prepare_photo(make_photo(blank, seed))
        assert refused.value.code == PhotoErrorCode.NO_INK


@pytest.mark.skipif(mnist_dir_from_env() is None, reason="needs the official MNIST test set: set MNIST_DIR")
def test_photographed_official_test_digits_read_at_least_90_percent() -> None:
    torch.set_num_threads(1)
    model = load_model()
    photos = photo_set(200, seed=1)
    images = np.stack([prepare_photo(jpeg) for jpeg, _ in photos]).astype(np.float32) / 255.0
    with torch.no_grad():
        predicted = model(torch.from_numpy(images).reshape(len(photos), -1)).argmax(dim=1).numpy()
    accuracy = float(np.mean(predicted == np.array([label for _, label in photos])))
    assert accuracy >= 0.9, accuracy


# ---------- over the WebSocket ----------

def photo_message(data: bytes) -> dict[str, str]:
    return {"data": base64.b64encode(data).decode()}


async def test_a_photo_replaces_the_drawing_and_every_question_works_on_it(
        app_url: str, golden_digits: dict[int, list[Stroke]]) -> None:
    jpeg = make_photo(embedded_digit(3), seed=5)
    expected = prepare_photo(jpeg)
    async with Visitor.connect(app_url) as visitor:
        assert visitor.welcome["limits"]["max_photo_side_px"] == MAX_SIDE_PX
        await visitor.draw(golden_digits[8])
        frame = await visitor.frame_for(await visitor.send("photo", **photo_message(jpeg)))
        assert np.array_equal(np.round(decode_array(frame["input"]) * 255).astype(np.uint8), expected)
        assert frame["prediction"] == 3
        # The same input sent back as the model's 28×28 input (a share link, a reconnect) gives the same frame.
        shared = {"dtype": "u8", "shape": [28, 28], "data": frame["input"]["data"]}
        again = await visitor.frame_for(await visitor.send("photo", input=shared))
        assert again["input"]["data"] == frame["input"]["data"] and again["heatmap"] == frame["heatmap"]
        # Selection, comparison, sanity checks and counterfactual: on the photo.
        crp = await visitor.frame_for(await visitor.send("select", output=3, hidden=5))
        assert crp["mode"] == "crp" and crp["input"]["data"] == frame["input"]["data"]
        await visitor.send("compare", methods=["lrp", "saliency"])
        assert (await visitor.recv_type("comparison"))["target"] == 3
        await visitor.send("counterfactual", target=8)
        answer = await visitor.recv_type("counterfactual")
        assert answer["target"] == 8 and answer["probability"] >= 0.9
        # Undo removes the photo in one step; a stroke after a photo starts a new drawing.
        blank = await visitor.frame_for(await visitor.send("undo"))
        assert decode_array(blank["input"]).max() == 0
        await visitor.frame_for(await visitor.send("photo", input=shared))
        drawn = await visitor.frame_for(await visitor.draw(golden_digits[1][:1]))
        np.testing.assert_allclose(decode_array(drawn["input"]), rasterize(golden_digits[1][:1]), atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize("fields, code", [
    (photo_message(b"GIF89a but not really"), "not_an_image"),
    (photo_message(png(Image.new("L", (MAX_SIDE_PX + 10, 64), 220))), "photo_too_large"),
    (photo_message(png(Image.new("L", (300, 300), 220))), "no_ink"),
    (photo_message(paper_with([(80, "1"), (330, "1")])), "several_digits"),
    ({"data": "not base64!"}, "invalid_message"),
    ({}, "invalid_message"),
    ({"input": {"dtype": "u8", "shape": [28, 28], "data": base64.b64encode(bytes(100)).decode()}}, "invalid_message"),
], ids=["not an image", "too large", "no ink", "several digits", "bad base64", "neither field", "short input"])
async def test_a_refused_photo_changes_nothing(app_url: str, golden_digits: dict[int, list[Stroke]],
                                               fields: dict, code: str) -> None:
    async with Visitor.connect(app_url) as visitor:
        before = await visitor.frame_for(await visitor.draw(golden_digits[4]))
        refused = await visitor.send("photo", **fields)
        error = await visitor.recv_type("error")
        assert (error["code"], error["seq"]) == (code, refused)
        after = await visitor.frame_for(await visitor.send("select", output=None, hidden=None))
        assert after["input"]["data"] == before["input"]["data"]
