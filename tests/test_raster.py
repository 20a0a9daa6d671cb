"""server.raster: strokes → MNIST-style 28×28 image."""

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from model_store import load_model
from model_store.datasets import load_idx, mnist_dir_from_env
from model_store.strokes import image_to_strokes, load_golden_digits
from server.raster import BOX_PX, CHUNK_SEGMENTS, COM_PX, MIN_EXTENT, PEN_PX, RasterCache, rasterize

SEVEN = [[[0.2, 0.2], [0.8, 0.2], [0.45, 0.9]], [[0.35, 0.55], [0.7, 0.55]]]


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.mgrid[0:28, 0:28]
    return float((image * rows).sum() / image.sum()), float((image * cols).sum() / image.sum())


def ink_box(image: np.ndarray, level: float = 0.05) -> tuple[int, int]:
    """Height and width of the pixels above ``level``."""
    rows, cols = np.nonzero(image > level)
    return int(np.ptp(rows)) + 1, int(np.ptp(cols)) + 1


def moved(strokes: list, scale: float, dx: float, dy: float) -> list:
    return [[[x * scale + dx, y * scale + dy] for x, y in stroke] for stroke in strokes]


def check_image(image: np.ndarray) -> None:
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0


@pytest.mark.parametrize("strokes", [[], [[]], [[], []]], ids=["no strokes", "one empty", "two empty"])
def test_empty_drawing_is_black(strokes):
    image = rasterize(strokes)
    check_image(image)
    assert not image.any()


def test_single_dot_is_a_centred_pen_dot():
    image = rasterize([[[0.3, 0.7]]])
    check_image(image)
    assert centre_of_mass(image) == pytest.approx((COM_PX, COM_PX), abs=0.2)
    # A round dot one pen across: π (d/2)² pixels of ink, not a 20-px blob.
    assert image.sum() == pytest.approx(math.pi * (PEN_PX / 2) ** 2, rel=0.35)


def test_digit_is_scaled_into_the_box_and_centred_by_mass():
    image = rasterize(SEVEN)
    check_image(image)
    height, width = ink_box(image)
    assert BOX_PX - 1 <= max(height, width) <= BOX_PX + 1
    assert centre_of_mass(image) == pytest.approx((COM_PX, COM_PX), abs=0.2)


@pytest.mark.parametrize("scale, dx, dy", [
    (0.1, 0.0, 0.0),    # tiny, top-left corner
    (0.1, 0.9, 0.9),    # tiny, bottom-right corner
    (0.25, 0.75, 0.0),  # small, top-right corner
    (1.0, 0.0, 0.0),    # as drawn
], ids=["tiny top-left", "tiny bottom-right", "small top-right", "full canvas"])
def test_size_and_position_do_not_matter(scale, dx, dy):
    reference = rasterize(SEVEN)
    image = rasterize(moved(SEVEN, scale, dx, dy))
    check_image(image)
    # Fixed-point rounding and the 1/4-pixel centring grid leave small differences only.
    assert np.abs(image - reference).mean() < 0.01
    assert image.sum() == pytest.approx(reference.sum(), rel=0.02)


def test_pen_width_is_about_two_pixels_whatever_the_drawing_size():
    for length in (0.05, 0.5, 1.0):
        image = rasterize([[[0.0, 0.0], [length, 0.0]]])
        # A horizontal line: ink per column in the middle of the line is the pen width.
        assert image[:, 8:20].sum(axis=0).mean() == pytest.approx(PEN_PX, abs=0.1)


def test_forty_strokes_and_extra_point_fields():
    rng = np.random.default_rng(0)
    strokes = [rng.uniform(0, 1, size=(int(rng.integers(1, 6)), 2)).tolist() for _ in range(40)]
    check_image(rasterize(strokes))
    with_time = [[[x, y, 0.016 * k, 0.5] for k, (x, y) in enumerate(stroke)] for stroke in SEVEN]
    ragged = [[[x, y] if k % 2 else [x, y, 0.1] for k, (x, y) in enumerate(stroke)] for stroke in SEVEN]
    assert np.array_equal(rasterize(with_time), rasterize(SEVEN))
    assert np.array_equal(rasterize(ragged), rasterize(SEVEN))


@pytest.mark.parametrize("strokes, message", [
    ([[[0.5, 0.5], [float("nan"), 0.2]]], "stroke 0 point 1"),
    ([[[0.5, 0.5]], [[0.1, float("inf")]]], "stroke 1 point 0"),
    ([[[1.2, 0.5]]], "in [0, 1]"),
    ([[[0.5, -0.01]]], "in [0, 1]"),
    ([[[0.5]]], "stroke 0"),
    ([[[0.5, 0.5], [0.5]]], "stroke 0 point 1"),
    ([[[0.5, 0.5], ["x", 0.5, 1]]], "stroke 0 point 1: expected"),
    ([[[0.5, 0.5]], [0.5, 0.5]], "stroke 1"),
], ids=["NaN", "inf", "x > 1", "y < 0", "one coordinate", "ragged short point", "not a number", "flat stroke"])
def test_bad_points_raise_value_error_naming_them(strokes, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rasterize(strokes)


points = st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=30)


def touches_border(image: np.ndarray, level: float = 0.0) -> bool:
    ink = image > level
    return bool(ink[0].any() or ink[-1].any() or ink[:, 0].any() or ink[:, -1].any())


@settings(max_examples=200, deadline=None)
@given(st.lists(points, min_size=1, max_size=8))
@example([[(0.0, 0.75), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (1.0, 0.5), (1.0, 0.0), (1.0, 0.875)]])
def test_any_valid_drawing_gives_a_boxed_centred_image(strokes):
    image = rasterize(strokes)
    check_image(image)
    assert image.sum() > 0
    xy = np.array([point for stroke in strokes for point in stroke])
    if np.ptp(xy, axis=0).max() >= MIN_EXTENT:
        # level 0.1: where a pen edge falls just past a pixel border, the area reduction puts a little ink
        # into the next pixel on each side (found by hypothesis: a 20-px box measured 22 at level 0.05)
        assert BOX_PX - 2 <= max(ink_box(image, level=0.1)) <= BOX_PX + 1
    # Centred on a 1/4-pixel grid, unless that would cut ink off: then the box is pushed against the border.
    centred = centre_of_mass(image) == pytest.approx((COM_PX, COM_PX), abs=0.2)
    assert centred or touches_border(image)


# What a visitor can do to a drawing, as the protocol allows it: append points to the last stroke, start a
# stroke, undo the last stroke, clear.  Coordinates on a coarse grid too, so that repeated points (zero-length
# segments), tiny drawings (below MIN_EXTENT) and points on the bounding box are common.
coordinate = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 0.25, 0.5, 0.5001, 1.0]))
edits = st.lists(st.one_of(
    st.tuples(st.just("append"), st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=2 * CHUNK_SEGMENTS)),
    st.tuples(st.just("stroke"), st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=8)),
    st.tuples(st.just("undo"), st.none()), st.tuples(st.just("clear"), st.none()),
), min_size=1, max_size=12)

# 1,000 edit sequences of 6.5 edits on average: thousands of drawings, each compared after its edit.
@settings(max_examples=1000, deadline=None)
@given(edits)
def test_incremental_raster_equals_the_full_raster_after_every_edit(edits):
    cache, strokes = RasterCache(), []
    for kind, points in edits:
        if kind == "append" and strokes:
            strokes[-1] = strokes[-1] + points
        elif kind in ("append", "stroke"):
            strokes.append(list(points))
        elif kind == "undo" and strokes:
            strokes.pop()
        elif kind == "clear":
            strokes = []
        drawing = tuple(tuple(stroke) for stroke in strokes)
        assert np.array_equal(rasterize(drawing, cache), rasterize(drawing))


def test_far_dot_is_kept_rather_than_centred():
    """A dot far below a heavy stroke would leave the field if the centre of mass were centred."""
    image = rasterize([[[0.0, 1.0]], [[0.0, 0.0], [1.0, 0.0]]])
    assert image[20:, :8].sum() > 1.0  # the dot, bottom left
    assert centre_of_mass(image)[0] < COM_PX - 1 and touches_border(image)


def test_golden_digits_are_mnist_like():
    for label, strokes in load_golden_digits().items():
        image = rasterize(strokes)
        check_image(image)
        assert max(ink_box(image)) in range(int(BOX_PX) - 2, int(BOX_PX) + 2), label
        assert centre_of_mass(image) == pytest.approx((COM_PX, COM_PX), abs=0.2)


REDRAWN = 1000


def test_default_model_reads_redrawn_official_test_digits():
    """≥ 94 % of re-rastered official test digits, random canvas sizes and positions."""
    directory = mnist_dir_from_env()
    if directory is None:
        pytest.skip("MNIST_DIR is not set: the official test digits are needed to redraw them")
    images, labels = load_idx(directory, "test")
    rng = np.random.default_rng(2024)
    chosen = rng.choice(len(images), REDRAWN, replace=False)
    redrawn = []
    for index in chosen:
        size = rng.uniform(0.1, 1.0)
        origin = tuple(rng.uniform(0.0, 1.0 - size, size=2))
        redrawn.append(rasterize(image_to_strokes(images[index], size, origin)))
    batch = torch.from_numpy(np.stack(redrawn)).reshape(REDRAWN, 784)
    accuracies = {}
    for name in ("default", "h16"):
        with torch.no_grad():
            predicted = load_model(name)(batch).argmax(dim=1).numpy()
        accuracies[name] = float((predicted == labels[chosen]).mean())
    print(f"\nre-rastered official test digits (n={REDRAWN}): "
          + ", ".join(f"{name} {accuracy:.1%}" for name, accuracy in accuracies.items()))
    assert accuracies["default"] >= 0.94


def test_the_cache_reports_the_pens_work_of_each_draw() -> None:
    """``work_px``: a digit's frame draws a few hundred canvas pixels, a whole redraw of a 4,032-point
    zig-zag hundreds of thousands, the same zig-zag from its cached canvas only its open chunk."""
    zigzag = tuple((0.1, 0.1) if index % 2 == 0 else (0.9, 0.9) for index in range(4032))
    cache = RasterCache()
    rasterize((((0.3, 0.3), (0.5, 0.6), (0.6, 0.8)),), cache)
    assert 0 < cache.work_px < 1_000
    rasterize((zigzag,), cache)
    whole = cache.work_px
    assert whole > 300_000
    rasterize((zigzag,), cache)  # unchanged: only the open chunk is drawn again
    assert 0 < cache.work_px < whole / 50
    rasterize((zigzag, ((0.0, 0.0),)), cache)  # a dot outside the box: everything again
    assert cache.work_px > 300_000
