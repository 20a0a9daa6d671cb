"""The sans-I/O protocol core: decoding, per-visitor state, limits (no server)."""

import json
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.protocol import (
    MAX_COMPARE_METHODS,
    MAX_SEQ,
    Clear,
    Compare,
    Configure,
    ErrorCode,
    Limits,
    ModelOptions,
    Options,
    ProtocolError,
    Select,
    Stroke,
    Undo,
    VisitorState,
    decode_message,
)

OPTIONS = Options(models={name: ModelOptions({"fc1": width}, ("epsilon", "zplus"), ("lrp", "lime"), "epsilon")
                          for name, width in (("default", 128), ("h16", 16))}
                  | {"cnn": ModelOptions({"fc1": 64, "conv1": 8, "conv2": 16}, ("epsilon_plus_flat", "epsilon_plus"),
                                         ("lrp", "gradcam"), "epsilon_plus_flat")},
                  methods={"lrp": "per-frame", "lime": "on-pause", "gradcam": "per-frame"}, default_model="default")


def state(**limits: int) -> VisitorState:
    return VisitorState(OPTIONS, Limits(**limits))


def message(**fields: object) -> str:
    return orjson.dumps(fields).decode()


def refusal(text: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        decode_message(text)
    return caught.value


def test_decodes_every_message_type() -> None:
    assert decode_message(message(type="stroke", seq=1, id=3, points=[[0, 1], [0.5, 0.25, 17.0, 0.3]])) == \
        Stroke(1, 3, ((0.0, 1.0), (0.5, 0.25)))
    assert decode_message(message(type="select", seq=2, output=4, hidden=None)) == Select(2, 4, None)
    assert decode_message(message(type="configure", seq=3, rule="zplus")) == Configure(3, None, None, "zplus")
    assert decode_message(message(type="clear", seq=4)) == Clear(4)
    assert decode_message(message(type="undo", seq=5, extra="ignored")) == Undo(5)
    assert decode_message(message(type="compare", seq=6, methods=["lrp", "lime"])) == Compare(6, ("lrp", "lime"))


@pytest.mark.parametrize(("text", "code", "seq"), [
    ("{", ErrorCode.INVALID_JSON, None),
    ("[1, 2]", ErrorCode.INVALID_JSON, None),
    ('{"type": "stroke", "seq": 1, "id": 0, "points": [[NaN, 0]]}', ErrorCode.INVALID_JSON, None),
    ('{"type": "stroke", "seq": 1, "id": 0, "points": [[1e400, 0]]}', ErrorCode.INVALID_JSON, None),
    (message(type="paint", seq=7), ErrorCode.UNKNOWN_TYPE, 7),
    (message(type=5, seq=7), ErrorCode.INVALID_MESSAGE, 7),
    (message(type="clear"), ErrorCode.INVALID_MESSAGE, None),
    (message(type="clear", seq=True), ErrorCode.INVALID_MESSAGE, None),
    (message(type="clear", seq=1.0), ErrorCode.INVALID_MESSAGE, None),
    (message(type="clear", seq=-1), ErrorCode.INVALID_MESSAGE, None),
    (message(type="clear", seq=MAX_SEQ), ErrorCode.INVALID_MESSAGE, None),
    (message(type="stroke", seq=1, id=False, points=[]), ErrorCode.INVALID_MESSAGE, 1),
    (message(type="stroke", seq=1, id=0, points="0,0"), ErrorCode.INVALID_MESSAGE, 1),
    (message(type="stroke", seq=1, id=0, points=[[0.5]]), ErrorCode.INVALID_MESSAGE, 1),
    (message(type="stroke", seq=1, id=0, points=[[True, 0.5]]), ErrorCode.INVALID_MESSAGE, 1),
    (message(type="stroke", seq=1, id=0, points=[["0.5", 0.5]]), ErrorCode.INVALID_MESSAGE, 1),
    (message(type="stroke", seq=1, id=0, points=[[0.5, 0.5, None]]), ErrorCode.INVALID_MESSAGE, 1),
    (message(type="stroke", seq=1, id=0, points=[[0.5, 1.0001]]), ErrorCode.OUT_OF_RANGE, 1),
    (message(type="stroke", seq=1, id=0, points=[[-0.01, 0.5]]), ErrorCode.OUT_OF_RANGE, 1),
    (message(type="select", seq=1, output=10, hidden=None), ErrorCode.OUT_OF_RANGE, 1),
    (message(type="select", seq=1, output=None, hidden=-1), ErrorCode.OUT_OF_RANGE, 1),
    (message(type="select", seq=1, output=True, hidden=None), ErrorCode.INVALID_MESSAGE, 1),
    (message(type="select", seq=1, output=2), ErrorCode.INVALID_MESSAGE, 1),
    (message(type="configure", seq=1, model=3), ErrorCode.INVALID_MESSAGE, 1),
    (message(type="compare", seq=1, methods=[]), ErrorCode.INVALID_MESSAGE, 1),
    (message(type="compare", seq=1, methods=["lrp"] * (MAX_COMPARE_METHODS + 1)), ErrorCode.INVALID_MESSAGE, 1),
], ids=lambda value: value if isinstance(value, str) and len(value) < 80 else None)
def test_refuses_bad_messages_with_their_code(text: str, code: ErrorCode, seq: int | None) -> None:
    error = refusal(text)
    assert (error.code, error.seq) == (code, seq)


def test_state_applies_strokes_incrementally_and_snapshots_are_frozen() -> None:
    visitor = state()
    visitor.apply(Stroke(1, 0, ((0.1, 0.1),)))
    snapshot = visitor.view()
    visitor.apply(Stroke(2, 0, ((0.2, 0.2),)))  # same id: appends
    visitor.apply(Stroke(3, 5, ((0.3, 0.3),)))  # larger id: new stroke
    assert snapshot.strokes == (((0.1, 0.1),),)
    assert visitor.view().strokes == (((0.1, 0.1), (0.2, 0.2)), ((0.3, 0.3),))
    assert visitor.view().seq == 3


@pytest.mark.parametrize("stroke_id", [0, 4])
def test_stroke_ids_must_be_last_or_larger(stroke_id: int) -> None:
    visitor = state()
    visitor.apply(Stroke(1, 0, ((0.1, 0.1),)))
    visitor.apply(Stroke(2, 5, ((0.1, 0.1),)))
    with pytest.raises(ProtocolError) as caught:
        visitor.apply(Stroke(3, stroke_id, ((0.2, 0.2),)))
    assert caught.value.code == ErrorCode.BAD_STROKE_ID
    assert visitor.view().strokes == (((0.1, 0.1),), ((0.1, 0.1),))


def test_ids_keep_increasing_after_undo_and_clear() -> None:
    visitor = state()
    visitor.apply(Stroke(1, 0, ((0.1, 0.1),)))
    visitor.apply(Stroke(2, 1, ((0.2, 0.2),)))
    visitor.apply(Undo(3))
    visitor.apply(Stroke(4, 0, ((0.3, 0.3),)))  # stroke 0 is the last stroke again: appends
    assert visitor.view().strokes == (((0.1, 0.1), (0.3, 0.3)),)
    visitor.apply(Clear(5))
    with pytest.raises(ProtocolError) as caught:
        visitor.apply(Stroke(6, 1, ((0.1, 0.1),)))
    assert caught.value.code == ErrorCode.BAD_STROKE_ID
    visitor.apply(Stroke(7, 2, ((0.1, 0.1),)))
    assert visitor.view().strokes == (((0.1, 0.1),),)


def test_undo_on_empty_drawing_is_a_no_op() -> None:
    visitor = state()
    assert visitor.apply(Undo(1)).frame
    assert visitor.view().strokes == ()


@pytest.mark.parametrize(("limits", "messages", "code"), [
    ({"max_points_per_message": 2}, [Stroke(1, 0, ((0.1, 0.1),) * 3)], ErrorCode.TOO_MANY_POINTS),
    ({"max_points": 4}, [Stroke(1, 0, ((0.1, 0.1),) * 3), Stroke(2, 0, ((0.1, 0.1),) * 2)],
     ErrorCode.TOO_MANY_POINTS),
    ({"max_strokes": 2}, [Stroke(1, 0, ()), Stroke(2, 1, ()), Stroke(3, 2, ())], ErrorCode.TOO_MANY_STROKES),
], ids=["max=2 sent=3 in one message", "max=4 drawing would hold 5", "max=2 strokes third stroke"])
def test_limits_refuse_at_the_boundary(limits: dict[str, int], messages: list[Stroke], code: ErrorCode) -> None:
    visitor = state(**limits)
    for accepted in messages[:-1]:
        visitor.apply(accepted)
    before = visitor.view()
    with pytest.raises(ProtocolError) as caught:
        visitor.apply(messages[-1])
    assert caught.value.code == code
    assert visitor.view() == before


def test_seq_must_increase_and_a_refused_message_changes_nothing() -> None:
    visitor = state()
    visitor.apply(Clear(5))
    with pytest.raises(ProtocolError) as caught:
        visitor.apply(Clear(5))
    assert caught.value.code == ErrorCode.INVALID_MESSAGE
    with pytest.raises(ProtocolError):
        visitor.apply(Select(6, None, 200))
    assert visitor.view().seq == 5
    visitor.apply(Select(6, None, 127))  # the refused seq 6 was not consumed
    assert (visitor.view().seq, visitor.view().hidden) == (6, 127)


def test_hidden_index_is_checked_against_the_current_model() -> None:
    visitor = state()
    visitor.apply(Select(1, 3, 100))
    effect = visitor.apply(Configure(2, "h16", None, None))
    assert effect.welcome
    assert (visitor.view().output, visitor.view().hidden) == (None, None)  # reset by the model change
    with pytest.raises(ProtocolError) as caught:
        visitor.apply(Select(3, None, 16))
    assert caught.value.code == ErrorCode.OUT_OF_RANGE


def test_configure_checks_names_and_keeps_selection_on_same_model() -> None:
    visitor = state()
    visitor.apply(Select(1, 2, None))
    assert not visitor.apply(Configure(2, "default", "lime", "zplus")).welcome
    assert (visitor.view().method, visitor.view().rule, visitor.view().output) == ("lime", "zplus", 2)
    for bad in (Configure(3, "h17", None, None), Configure(3, None, "magic", None), Configure(3, None, None, "z")):
        with pytest.raises(ProtocolError) as caught:
            visitor.apply(bad)
        assert caught.value.code == ErrorCode.UNKNOWN_OPTION


def test_compare_asks_for_known_methods_and_no_frame() -> None:
    visitor = state()
    effect = visitor.apply(Compare(1, ("lrp", "lime")))
    assert (effect.frame, effect.compare) == (False, ("lrp", "lime"))
    with pytest.raises(ProtocolError) as caught:
        visitor.apply(Compare(2, ("lrp", "shap")))
    assert caught.value.code == ErrorCode.UNKNOWN_OPTION


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)
points_like = st.lists(st.lists(st.floats() | st.integers(), max_size=4), max_size=4) | json_values
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["stroke", "select", "configure", "clear", "undo", "compare", "x"]),
     "seq": st.integers(-2, 2**54) | st.booleans() | st.floats()},
    optional={"id": json_values | st.integers(-5, 5), "points": points_like,
              "output": json_values | st.integers(-2, 12), "hidden": json_values | st.integers(-2, 200),
              "model": json_values, "method": json_values, "rule": json_values, "methods": json_values})


def _encode(document: object) -> str:
    """Standard-library JSON: it writes integers of any size and NaN/Infinity, both good fuzz."""
    return json.dumps(document)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=64), st.binary(max_size=64), json_values.map(_encode), message_like.map(_encode)))
def test_fuzz_decode_only_raises_protocol_error(text: str | bytes) -> None:
    try:
        decoded = decode_message(text)
    except ProtocolError as error:
        assert error.code in set(ErrorCode)
        return
    # Whatever passes holds only finite in-range numbers, ready for the state and the rasteriser.
    if isinstance(decoded, Stroke):
        assert all(0.0 <= v <= 1.0 and math.isfinite(v) for point in decoded.points for v in point)
    visitor = state()
    try:
        visitor.apply(decoded)
    except ProtocolError as error:
        assert error.code in set(ErrorCode)
