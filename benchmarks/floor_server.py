"""The floor of the latency benchmark: our WebSocket stack doing no work at all.

Starlette + uvicorn run exactly as ``python -m server`` runs them (its
``STACK_OPTIONS``: uvloop, httptools, its WebSocket protocol class; the same
WebSocket limits; ``uvicorn.Server.run``) answering each client message with a frame of the size
and layout of a real one (docs/protocol.md §frame, H hidden neurons), built
once at start-up; per message it only reads ``seq`` and splices it in.  The
gap between this and our server is the cost of the model, the explanations
and the per-visitor state; the floor itself is what Python, the event loop
and the WebSocket framing cost on this machine.

``python -m benchmarks.floor_server --host 127.0.0.1 --port 8001 [--hidden 128]``
"""

import argparse
import base64

import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from server.wsprotocol import STACK_OPTIONS

SEQ_MARK = 999_999_999_999  # a placeholder seq, replaced per message


def _array(values: np.ndarray, dtype: str, scale: float | None) -> dict:
    document = {"dtype": dtype, "shape": list(values.shape)}
    if scale is not None:
        document["scale"] = scale
    document["data"] = base64.b64encode(values.tobytes()).decode("ascii")
    return document


def frame_parts(hidden: int, seed: int = 0) -> tuple[bytes, bytes]:
    """A frame of the protocol's layout with random values, split around its ``seq``."""
    rng = np.random.default_rng(seed)
    frame = {
        "type": "frame", "seq": SEQ_MARK,
        "model": "default", "method": "lrp", "rule": "epsilon",
        "output": None, "hidden": None, "target": 4, "mode": "lrp", "prediction": 4,
        "probabilities": rng.random(10, dtype=np.float32), "logits": rng.normal(size=10).astype(np.float32),
        "activations": _array(rng.integers(0, 256, hidden, dtype=np.uint8), "u8", 0.02),
        "hidden_relevance": _array(rng.integers(-127, 128, hidden, dtype=np.int8), "i8", 0.01),
        "edges": _array(rng.integers(-127, 128, hidden, dtype=np.int8), "i8", 0.01),
        "input": _array(rng.integers(0, 256, (28, 28), dtype=np.uint8), "u8", 1 / 255),
        "heatmap": _array(rng.integers(-127, 128, (28, 28), dtype=np.int8), "i8", 0.0123),
        "conservation": {"input_sum": 5.93, "hidden_sum": 6.02, "logit": 6.2},
        "pending": False, "compute_ms": 0.0,
    }
    text = orjson.dumps(frame, option=orjson.OPT_SERIALIZE_NUMPY)
    before, after = text.split(str(SEQ_MARK).encode(), 1)
    return before, after


def welcome(hidden: int) -> bytes:
    """A ``welcome`` with the fields a client needs (docs/protocol.md §welcome)."""
    return orjson.dumps({
        "type": "welcome", "protocol": 1,
        "model": {"name": "default", "layers": [784, hidden, 10], "hidden": hidden, "test_accuracy": None},
        "models": [{"name": "default", "hidden": hidden, "test_accuracy": None}],
        "methods": [{"name": "lrp", "label": "none (floor server)", "cost": "per-frame"}],
        "rules": [{"name": "epsilon", "label": "none", "description": "the floor server computes nothing"}],
        "state": {"model": "default", "method": "lrp", "rule": "epsilon", "output": None, "hidden": None},
        "limits": {"max_message_bytes": 65536, "max_points_per_message": 512, "max_points": 4096,
                   "max_strokes": 64, "max_frames_per_s": 60, "idle_timeout_s": 600,
                   "ping_interval_s": 20, "pause_ms": 150},
    })


def create_app(hidden: int) -> Starlette:
    """The floor app: ``/ws`` answers every message, ``/readyz`` and ``/healthz`` say ok."""
    before, after = frame_parts(hidden)
    greeting = welcome(hidden).decode()

    def reply(seq: object) -> str:
        return (before + orjson.dumps(seq) + after).decode()

    async def floor(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(greeting)
        await websocket.send_text(reply(None))
        try:
            while True:
                message = orjson.loads(await websocket.receive_text())
                await websocket.send_text(reply(message.get("seq")))
        except WebSocketDisconnect:
            return  # the visitor left: nothing to clean up

    async def ok(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[WebSocketRoute("/ws", floor), Route("/healthz", ok), Route("/readyz", ok)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--hidden", type=int, default=128, help="H: sets the frame size (128: ~12 kB)")
    args = parser.parse_args()
    # The options of server.__main__.uvicorn_config that touch the data path.
    config = uvicorn.Config(create_app(args.hidden), host=args.host, port=args.port, **STACK_OPTIONS,
                            ws_max_size=65536, ws_ping_interval=20.0, ws_ping_timeout=20.0, lifespan="off",
                            log_level="warning", access_log=False)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
