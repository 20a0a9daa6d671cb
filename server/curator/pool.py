"""The pool as the serving model reads it: readings, embeddings and contrast maps, on the engine threads.

Every number here comes from the engine (:mod:`server.explain.engine`) through
the batcher's slow lane, as a visitor's comparison does: never on the event
loop, never two attributions at once on one model object.  A drawing's
reading and embedding (its hidden activations) are cached per model: strokes
never change once stored.
"""

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from server.inference.batcher import Batcher
from server.inference.jobs import Job, JobResult, Spec
from server.protocol import DEFAULT_METHOD
from server.teaching.schema import Drawing

CHUNK = 16  # jobs in flight at once: one batch of the engine (Settings.batch_max)
MAX_CACHED = 20_000  # readings kept (~100 bytes each)
TOP_NEURONS = 5  # neurons listed pulling each way

Strokes = tuple[tuple[tuple[float, float], ...], ...]


def strokes_of(drawing: Drawing) -> Strokes:
    """The stored JSON strokes as the engine takes them."""
    return tuple(tuple((float(x), float(y)) for x, y, *_ in stroke) for stroke in drawing.strokes)


@dataclass(frozen=True)
class Reading:
    """``probabilities`` ``(10,)`` and ``embedding`` ``(H,)`` (hidden activations), float32."""

    probabilities: np.ndarray
    embedding: np.ndarray


@dataclass(frozen=True)
class ContrastRenderer:
    """The JSON of a contrast job's result, made on its engine thread.

    ``heatmap``: 28 × 28 relevance of each pixel for ``z_class − z_versus`` (positive: for ``class``),
    ``image``: the model's input, ``toward`` / ``against``: the neurons with the largest share of the
    difference for each side (``share``: their part of it).
    """

    drawing_id: int
    model: str

    def __call__(self, result: JobResult) -> str:
        frame = result.frames[0]
        shares = frame.hidden_relevance.astype(float)
        order = np.argsort(shares)
        toward = [{"neuron": int(j), "share": round(float(shares[j]), 4)} for j in order[::-1][:TOP_NEURONS]
                  if shares[j] > 0]
        against = [{"neuron": int(j), "share": round(float(shares[j]), 4)} for j in order[:TOP_NEURONS]
                   if shares[j] < 0]
        return orjson.dumps({
            "id": self.drawing_id, "model": self.model, "class": int(frame.target), "versus": frame.versus,
            "difference": round(float(frame.conservation["logit"]), 4),
            "heatmap": np.round(frame.heatmap.astype(float), 5).tolist(),
            "image": np.round(result.image.astype(float), 3).tolist(),
            "toward": toward, "against": against,
        }).decode()


class Pool:
    """Readings of stored drawings by one process's models, computed by its engine threads."""

    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher
        self.cache: OrderedDict[tuple[str, int], Reading] = OrderedDict()

    async def read(self, model: str, drawings: list[Drawing]) -> list[Reading]:
        """The reading of each drawing by ``model``, in order."""
        missing = [drawing for drawing in drawings if (model, drawing.id) not in self.cache]
        spec = (Spec(None, None, DEFAULT_METHOD, None, heatmap=False),)
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start:start + CHUNK]
            results = await asyncio.gather(*(self.batcher.compute(Job(model, strokes_of(drawing), spec), slow=True)
                                             for drawing in chunk))
            for drawing, result in zip(chunk, results):
                frame = result.frames[0]
                self._keep((model, drawing.id), Reading(frame.probabilities, frame.activations))
        return [self.cache[(model, drawing.id)] for drawing in drawings]

    def _keep(self, key: tuple[str, int], reading: Reading) -> None:
        self.cache[key] = reading
        while len(self.cache) > MAX_CACHED:
            self.cache.popitem(last=False)

    async def contrast(self, model: str, drawing: Drawing) -> dict[str, Any]:
        """Why the model hesitates: the contrast map of its top class against the runner-up (LRP, the
        model's default rule; docs/protocol.md, "Contrast") and the neurons pulling each way."""
        reading = (await self.read(model, [drawing]))[0]
        first, second = (int(c) for c in np.argsort(-reading.probabilities)[:2])
        job = Job(model, strokes_of(drawing), (Spec(first, None, DEFAULT_METHOD, None, versus=second),),
                  render=ContrastRenderer(drawing.id, model))
        result = await self.batcher.compute(job, slow=True)
        if result.text is None:
            raise RuntimeError("a contrast job came back without its text")
        answer: dict[str, Any] = orjson.loads(result.text)
        return answer
