"""model_store.strokes: digit image → pen strokes, and the golden digits."""

import cv2
import numpy as np
import pytest
import torch

from model_store import load_model, model_names
from model_store.datasets import load_embedded
from model_store.strokes import image_to_strokes, load_golden_digits, make_golden_digits, skeletonize, trace
from server.raster import rasterize


def drawn(shape: str) -> np.ndarray:
    """A 28×28 test image with a 2-px line drawing."""
    image = np.zeros((28, 28), dtype=np.uint8)
    if shape == "line":
        cv2.line(image, (6, 14), (22, 14), 255, 2)
    elif shape == "ring":
        cv2.circle(image, (14, 14), 8, 255, 2)
    elif shape == "tee":
        cv2.line(image, (6, 6), (22, 6), 255, 2)
        cv2.line(image, (14, 6), (14, 23), 255, 2)
    return image.astype(np.float32) / 255


def test_blank_image_has_no_strokes():
    assert image_to_strokes(np.zeros((28, 28), dtype=np.float32)) == []


def test_line_is_one_stroke_between_its_ends():
    strokes = image_to_strokes(drawn("line"), size=1.0, origin=(0.0, 0.0))
    assert len(strokes) == 1
    xs = sorted(x for x, _ in strokes[0])
    # The ends shrink by about half a pen width when thinned.
    assert xs[0] == pytest.approx(6.5 / 28, abs=1.5 / 28) and xs[-1] == pytest.approx(22.5 / 28, abs=1.5 / 28)


def test_ring_is_one_closed_stroke():
    strokes = image_to_strokes(drawn("ring"), size=1.0, origin=(0.0, 0.0))
    assert len(strokes) == 1
    assert strokes[0][0] == strokes[0][-1]


def test_tee_is_three_paths_meeting_at_a_branch():
    paths = trace(skeletonize(drawn("tee")))
    assert len(paths) == 3
    ends = [path[0] for path in paths] + [path[-1] for path in paths]
    branch = max(set(ends), key=ends.count)
    assert ends.count(branch) == 3


def test_strokes_lie_in_the_given_square():
    image = load_embedded()[0][7]
    strokes = image_to_strokes(image, size=0.25, origin=(0.7, 0.05))
    points = np.array([point for stroke in strokes for point in stroke])
    assert points[:, 0].min() >= 0.7 and points[:, 0].max() <= 0.95
    assert points[:, 1].min() >= 0.05 and points[:, 1].max() <= 0.30


def test_square_outside_canvas_is_refused():
    with pytest.raises(ValueError, match="inside the unit canvas"):
        image_to_strokes(drawn("line"), size=0.5, origin=(0.6, 0.0))


def test_redrawn_embedded_digits_look_like_the_originals():
    images, labels = load_embedded()
    for index in range(0, 5000, 500):
        redrawn = rasterize(image_to_strokes(images[index]))
        correlation = np.corrcoef(redrawn.ravel(), images[index].ravel())[0, 1]
        assert correlation > 0.6, f"digit {index} (label {labels[index]}): correlation {correlation:.2f}"


def test_golden_digits_are_classified_correctly_by_every_shipped_model():
    golden = load_golden_digits()
    assert sorted(golden) == list(range(10))
    batch = torch.from_numpy(np.stack([rasterize(golden[label]) for label in range(10)])).reshape(10, 1, 28, 28)
    for name in model_names():
        with torch.no_grad():
            predicted = load_model(name)(batch).argmax(dim=1).tolist()
        assert predicted == list(range(10)), f"model {name!r}"


def test_golden_digits_file_is_reproducible():
    images, labels = load_embedded()
    models = [load_model(name) for name in model_names()]
    remade = make_golden_digits(images, labels, models, rasterize)
    rounded = {label: [[(round(x, 5), round(y, 5)) for x, y in stroke] for stroke in strokes]
               for label, strokes in remade.items()}
    assert rounded == load_golden_digits(), "golden_digits.json is stale: run `python -m model_store.strokes`"
