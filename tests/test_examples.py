"""static/examples.json: training digits only, each of the kind it claims for the shipped model."""

import numpy as np
import pytest

from model_store.datasets import load_embedded
from model_store.examples import TRICKY_PER_KIND, kind_of, load_examples, read
from model_store.store import load_model
from server.raster import rasterize


@pytest.fixture(scope="module")
def examples() -> list[dict]:
    return load_examples()


def test_ten_clear_digits_then_ambiguous_and_wrong_ones(examples: list[dict]) -> None:
    kinds = [example["kind"] for example in examples]
    assert [example["label"] for example in examples[:10]] == list(range(10))
    assert kinds == ["clear"] * 10 + ["ambiguous"] * TRICKY_PER_KIND + ["wrong"] * TRICKY_PER_KIND


def test_each_example_is_an_embedded_training_digit_of_its_label(examples: list[dict]) -> None:
    _, labels = load_embedded()
    assert all(int(labels[example["index"]]) == example["label"] for example in examples)


def test_the_model_reads_each_example_as_its_kind_says(examples: list[dict]) -> None:
    model = load_model("default")
    for example in examples:
        strokes = [[tuple(point) for point in stroke] for stroke in example["strokes"]]
        probabilities = read(model, strokes, rasterize)
        assert kind_of(example["label"], probabilities) == example["kind"], (example["index"], np.round(probabilities, 3))
