"""The ``counterfactual`` answer: one search per model, built on first use, and its message.

:class:`Counterfactuals` holds one
:class:`~server.explain.counterfactual.CounterfactualSearch` per model (built
from the embedded training digits on the first request for that model, ~0.1 s)
and turns a :class:`~server.protocol.CounterfactualAsk` into the text of the
``counterfactual`` message, or of an ``error`` with code ``no_counterfactual``
(docs/protocol.md, "counterfactual").  :meth:`Counterfactuals.answer` blocks
for the search's steps (at most 40 per path): the session runs it on a worker thread, whose
compute deadline may end it as a fault (``counterfactual_failed``).
"""

import threading

import numpy as np
from torch import nn

from server.explain.counterfactual import CounterfactualSearch
from server.photo import model_input

from .frames import encode_counterfactual, encode_error
from .neurons import Digits
from .protocol import CounterfactualAsk, ErrorCode


class Counterfactuals:
    """Counterfactual searches of every model; thread-safe (a search is read-only once built).

    Parameters
    ----------
    models:
        Model name → ``Sequential(flatten, fc1, relu, fc2)``.
    digits:
        The embedded training digits (the prototypes; never the official test set).
    """

    def __init__(self, models: dict[str, nn.Module], digits: Digits) -> None:
        self.models = models
        self.digits = digits
        self.searches: dict[str, CounterfactualSearch] = {}
        self.lock = threading.Lock()

    def prepare(self) -> None:
        """Build every model's search now (blocking), rather than on its first request."""
        for model in self.models:
            self.search(model)

    def search(self, model: str) -> CounterfactualSearch:
        """The search of ``model``, built by the first caller."""
        with self.lock:
            if model not in self.searches:
                self.searches[model] = CounterfactualSearch(self.models[model], *self.digits.get())
            return self.searches[model]

    def answer(self, ask: CounterfactualAsk) -> str:
        """The ``counterfactual`` message for ``ask`` (or its ``error``), as text."""
        view = ask.view
        search = self.search(view.model)
        image = model_input(view.strokes, view.photo)
        target = ask.target if ask.target is not None else runner_up(search, image, view.knockout)
        found = search.find(image, target, view.knockout)
        if found is None:
            threshold = search.objective.threshold
            message = (f"the model reads no training digit of {target} as {target} with p ≥ {threshold:g}: "
                       "there is nothing to morph towards")
            return encode_error(ErrorCode.NO_COUNTERFACTUAL, message, view.seq).decode()
        return encode_counterfactual(view, found).decode()


def runner_up(search: CounterfactualSearch, image: np.ndarray, knockout: tuple[int, ...]) -> int:
    """The class with the second-highest probability for ``image`` (with ``knockout``)."""
    network = search.network(knockout)
    _, activations = network.hidden(image.reshape(1, -1).astype(np.float32))
    return int(np.argsort(-network.probabilities(activations)[0], kind="stable")[1])
