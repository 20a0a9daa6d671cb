"""Small pure parts of the server: settings from the environment, the Origin allowlist, array encoding, rate limits,
the engine threads' deadline and shared engines, the fair-share usage."""

import asyncio
import math
import threading

import numpy as np
import pytest

from model_store import load_model
from server.frames import encode_f32, encode_i8, encode_u8, encode_u8_scaled
from server.inference.jobs import InferenceError, default_engine_factory
from server.inference.usage import TAU_S, Usage
from server.inference.workers import Workers
from server.origins import origin_allowed
from server.ratelimit import ErrorWindow, TokenBucket
from server.scheduling import FRAME_BURST
from server.settings import DEFAULT_ALLOWED_ORIGINS, Settings, SettingsError
from support import decode_array


def test_settings_read_the_environment_with_types_and_defaults() -> None:
    settings = Settings.from_env({"PORT": "9001", "COALESCE": "false", "ALLOWED_ORIGINS": "self, https://a.example",
                                  "BATCH_WAIT_MS": "0.5", "MODEL": "h16", "MAX_POINTS": ""})
    assert (settings.port, settings.coalesce, settings.batch_wait_ms, settings.model) == (9001, False, 0.5, "h16")
    assert settings.allowed_origins == ("self", "https://a.example")
    assert settings.max_points == Settings().max_points  # empty: the default
    assert Settings.from_env({}).allowed_origins == DEFAULT_ALLOWED_ORIGINS


@pytest.mark.parametrize("environment", [{"PORT": "eighty"}, {"PORT": "70000"}, {"COALESCE": "maybe"},
                                         {"MAX_CONNECTIONS": "0"}, {"BACKEND": "gpu"}, {"PING_TIMEOUT_S": "nan"}])
def test_settings_refuse_bad_values_naming_the_variable(environment: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(environment))):
        Settings.from_env(environment)


@pytest.mark.parametrize(("origin", "host", "secure", "allowed"), [
    ("http://127.0.0.1:8000", "127.0.0.1:8000", False, True),
    ("https://demo.example", "demo.example", True, True),
    ("http://demo.example", "demo.example", True, False),  # wss page must come from https
    ("http://LOCALHOST:5173", "demo.example", False, True),
    ("http://localhost", "demo.example", False, True),
    ("http://localhost:", "demo.example", False, False),
    ("http://localhost:80x", "demo.example", False, False),
    ("http://localhost.evil.example", "demo.example", False, False),
    ("https://localhost:5173", "demo.example", False, False),
    ("http://evil.example", "demo.example", False, False),
    ("null", "demo.example", False, False),
    (None, "demo.example", False, False),
])
def test_origin_allowlist_with_defaults(origin: str | None, host: str, secure: bool, allowed: bool) -> None:
    assert origin_allowed(origin, host, secure, DEFAULT_ALLOWED_ORIGINS) is allowed


def test_arrays_decode_as_documented_within_quantisation() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((28, 28), dtype=np.float32)
    np.testing.assert_allclose(decode_array(encode_u8(image)), image, rtol=0, atol=0.5 / 255 + 1e-7)
    relevance = rng.normal(size=(28, 28)).astype(np.float32)
    encoded = encode_i8(relevance)
    assert encoded["scale"] == pytest.approx(np.abs(relevance).max() / 127)
    decoded = decode_array(encoded)
    np.testing.assert_allclose(decoded, relevance, rtol=0, atol=encoded["scale"] / 2 + 1e-7)
    assert np.abs(decoded).max() == pytest.approx(np.abs(relevance).max(), rel=1e-6)  # ±127 is ±max
    activations = np.maximum(rng.normal(size=128), 0).astype(np.float32)
    encoded = encode_u8_scaled(activations)
    assert encoded["dtype"] == "u8" and encoded["scale"] == pytest.approx(activations.max() / 255)
    np.testing.assert_allclose(decode_array(encoded), activations, rtol=0, atol=encoded["scale"] / 2 + 1e-7)
    assert encode_u8_scaled(np.zeros(16, np.float32))["scale"] == 0.0
    weights = rng.normal(size=(28, 28)).astype(np.float32)
    np.testing.assert_array_equal(decode_array(encode_f32(weights)), weights)
    zeros = encode_i8(np.zeros((28, 28), np.float32))
    assert zeros["scale"] == 0.0 and not decode_array(zeros).any()


def test_token_bucket_admits_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=10, now=0.0)
    assert [bucket.admit(0.0) for _ in range(11)] == [True] * 10 + [False]
    assert bucket.admit(0.05) is False  # half a token back
    assert bucket.admit(0.1) is True


def test_token_bucket_says_how_long_until_the_next_token() -> None:
    bucket = TokenBucket(rate_per_s=60.0, burst=FRAME_BURST, now=0.0)
    assert bucket.wait_s(0.0) == 0.0  # after a pause: at once, twice
    assert bucket.admit(0.0) and bucket.wait_s(0.0) == 0.0 and bucket.admit(0.0)
    assert bucket.wait_s(0.0) == pytest.approx(1 / 60)  # then one token per 1/60 s
    assert bucket.wait_s(0.01) == pytest.approx(1 / 60 - 0.01)


def test_token_bucket_never_exceeds_burst_plus_rate_times_window() -> None:
    bucket, now, sent = TokenBucket(rate_per_s=60.0, burst=FRAME_BURST, now=0.0), 0.0, 0
    while now < 1.0:  # a frame loop that always has input: send whenever allowed
        now += bucket.wait_s(now)
        assert bucket.admit(now)
        sent += 1
    assert 60 <= sent <= FRAME_BURST + 60 + 1  # the rate is kept; the last frame may fall just past 1 s


def test_error_window_counts_only_recent_errors() -> None:
    window = ErrorWindow(allowed=2, window_s=10.0)
    assert [window.record(t) for t in (0.0, 1.0)] == [False, False]
    assert window.record(10.5) is False  # the error at 0.0 has left the window
    assert window.record(10.6) is True


async def test_workers_fail_a_call_past_the_deadline_and_replace_its_thread() -> None:
    release = threading.Event()
    workers = Workers(count=1, deadline_s=0.2, max_abandoned=1)
    try:
        worker = await workers.acquire()
        with pytest.raises(InferenceError, match="not computed within 0.2 s"):
            await workers.run(worker, release.wait)
        assert workers.serving and workers.hung == 1
        replacement = await asyncio.wait_for(workers.acquire(), timeout=1)
        assert replacement is not worker
        assert await workers.run(replacement, sum, [1, 2]) == 3  # the new thread computes
        with pytest.raises(InferenceError, match="not computed"):
            await workers.run(await workers.acquire(), release.wait)
        assert not workers.serving  # a second hung thread is one more than max_abandoned: the pool is empty
        with pytest.raises(InferenceError, match="no more could be replaced"):
            await asyncio.wait_for(workers.acquire(), timeout=1)
    finally:
        release.set()
        workers.stop()


async def test_an_abandoned_thread_that_returns_ends_and_frees_its_place() -> None:
    release = threading.Event()
    workers = Workers(count=1, deadline_s=0.1, max_abandoned=1)
    try:
        hung = await workers.acquire()
        with pytest.raises(InferenceError):
            await workers.run(hung, release.wait)
        release.set()
        await asyncio.to_thread(hung.thread.join, 5)
        assert not hung.thread.is_alive() and workers.hung == 0
    finally:
        workers.stop()


def test_usage_holds_a_steady_rate_and_forgets() -> None:
    usage = Usage(fair_share=0.1)
    for tick in range(600):  # 60 frames/s for 10 s
        usage.charge(1, 0.003, 600.0, tick / 60)  # a digit: 3 ms frames, ~600 px of raster work: 0.18 s/s
        usage.charge(2, 0.005, 40_000.0, tick / 60)  # a costly drawing redrawn whole every frame: 0.3 s/s
    assert usage.rate(1, 10.0) == pytest.approx(0.18, rel=0.05)
    assert usage.heavy(2, 10.0) and not usage.heavy(1, 10.0)
    assert not usage.over_share(1, 10.0) and usage.over_share(2, 10.0)  # only the heavy are held back
    assert usage.wait_s(2, 10.0) == pytest.approx(TAU_S * math.log(0.3 / 0.1), rel=0.05)
    assert not usage.over_share(2, 10.0 + 3 * TAU_S)  # after a quiet while, back within the share
    usage.charge(3, 0.050, 600.0, 0.0)  # a digit's frame that took 50 ms of CPU (a busy host): not heavy
    assert not usage.heavy(3, 0.0)


def test_one_costly_raster_in_five_makes_a_visitor_heavy_a_big_scribble_now_and_then_does_not() -> None:
    """The rescale abuse: a whole redraw of 4,000 points (~400,000 px) every fifth frame and cheap frames
    between is heavy and over its share; a scribble redrawn whole (~38,000 px) twice a second is not."""
    usage = Usage(fair_share=0.1)
    for tick in range(300):
        usage.charge(1, *((0.008, 400_000.0) if tick % 5 == 0 else (0.001, 3_000.0)), tick / 60)
        usage.charge(2, *((0.004, 38_000.0) if tick % 30 == 0 else (0.001, 500.0)), tick / 60)
    assert usage.heavy(1, 5.0) and usage.over_share(1, 5.0)
    assert not usage.heavy(2, 5.0) and not usage.over_share(2, 5.0)


def test_engines_of_one_model_share_their_closed_forms_and_no_model() -> None:
    first, other_model = load_model("h16"), load_model("h16")
    engines = [default_engine_factory(first, "fast") for _ in range(3)] + [default_engine_factory(other_model, "fast")]
    assert engines[0]._relevance is engines[1]._relevance is engines[2]._relevance
    assert engines[3]._relevance is not engines[0]._relevance
    assert len({id(engine.model) for engine in engines} | {id(first), id(other_model)}) == 6
