"""Sans-I/O core of wire protocol v1 (docs/protocol.md): messages in, drawing state out.

No I/O and no ``await`` here: :func:`decode_message` turns one text frame into
a typed message or raises :class:`ProtocolError`; :class:`VisitorState` applies
messages to one visitor's drawing and selection, refusing any that would break
a limit, so that nothing invalid ever reaches the rasteriser or the model.
A refused message changes nothing.
"""

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeGuard

import orjson

from model_store.sizes import N_CLASSES

PROTOCOL_VERSION = 1
MAX_SEQ = 2**53  # exclusive; the largest integer a JavaScript number holds exactly
MAX_COMPARE_METHODS = 10
DEFAULT_METHOD = "lrp"
# Chosen by measurement on official test digits 0–399 (docs/explanations.md, "The default preset"): it ties
# with γ on deletion + insertion (95 % CIs contain 0), and a tie goes to ε, exact on this network.
DEFAULT_RULE = "epsilon"

Point = tuple[float, float]


class ErrorCode(StrEnum):
    """The ``code`` of an ``error`` message (docs/protocol.md, "error")."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    OUT_OF_RANGE = "out_of_range"
    BAD_STROKE_ID = "bad_stroke_id"
    TOO_MANY_POINTS = "too_many_points"
    TOO_MANY_STROKES = "too_many_strokes"
    UNKNOWN_OPTION = "unknown_option"
    RATE_LIMITED = "rate_limited"
    BAD_VERSUS = "bad_versus"
    DUPLICATE_KNOCKOUT = "duplicate_knockout"
    TOO_MANY_KNOCKOUTS = "too_many_knockouts"
    NO_COUNTERFACTUAL = "no_counterfactual"
    COUNTERFACTUAL_FAILED = "counterfactual_failed"
    COMPUTE_TIMEOUT = "compute_timeout"  # a comparison not computed within COMPUTE_DEADLINE_S


class ProtocolError(ValueError):
    """A refused client message: ``code`` for programs, ``message`` for people.

    ``seq`` is the refused message's ``seq`` when it could be read, else ``None``.
    """

    def __init__(self, code: ErrorCode, message: str, seq: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.seq = seq


@dataclass(frozen=True)
class Stroke:
    """Append ``points`` (canvas fractions ``(x, y)`` in [0, 1]) to stroke ``id``."""

    seq: int
    id: int
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Select:
    """Condition the heatmap on output class and/or hidden neuron (``None``: unset); ``versus``: the
    rival class of a contrast ("why ``output`` and not ``versus``"), ``None``: no contrast."""

    seq: int
    output: int | None
    hidden: int | None
    versus: int | None = None


@dataclass(frozen=True)
class Configure:
    """Change any of model, method, rule, knocked-out hidden units (``None``: keep; ``()``: none)."""

    seq: int
    model: str | None
    method: str | None
    rule: str | None
    knockout: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Clear:
    seq: int


@dataclass(frozen=True)
class Undo:
    seq: int


@dataclass(frozen=True)
class Compare:
    """Ask for one heatmap per method for the current drawing and target."""

    seq: int
    methods: tuple[str, ...]


@dataclass(frozen=True)
class CounterfactualRequest:
    """Ask for a nearby drawing the model reads as ``target`` (``None``: the runner-up class)."""

    seq: int
    target: int | None


@dataclass(frozen=True)
class SanityCheck:
    """Ask for the sanity checks ("Can I trust this map?") of the current drawing, method, rule and selection."""

    seq: int


Message = Stroke | Select | Configure | Clear | Undo | Compare | CounterfactualRequest | SanityCheck


@dataclass(frozen=True)
class Ack:
    """The client painted frame ``frame`` (and so every earlier one).

    Outside the ``seq`` numbering: it changes nothing a frame shows.  Applied
    to the visitor's frame schedule (:mod:`server.scheduling`), not to its state.
    """

    frame: int


def decode_message(text: str | bytes) -> Message | Ack:
    """Parse one client message; raise :class:`ProtocolError` for anything else.

    Checks everything that does not depend on the visitor's state: JSON
    syntax, field presence and types (``True`` is not an integer), finiteness,
    coordinate range, ``seq`` range (every type but ``ack``, which has none).
    Unknown extra fields are ignored.
    """
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"not JSON ({error})") from None
    if not isinstance(document, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON, f"expected a JSON object, got {_kind(document)}")
    seq = _readable_seq(document)
    kind = document.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'type' must be a string, got {_kind(kind)}", seq)
    if kind == "ack":
        return _decode_ack(document)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown type {kind[:40]!r}; expected one of "
                            f"{', '.join(_DECODERS)}, ack", seq)
    if seq is None:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'seq' must be an integer in 0 .. 2**53-1, "
                            f"got {_kind(document.get('seq'))}")
    return decoder(document, seq)


def _kind(value: Any) -> str:
    """Name the JSON type of ``value`` for an error message (never its contents)."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _readable_seq(document: dict[str, Any]) -> int | None:
    seq = document.get("seq")
    return seq if _is_int(seq) and 0 <= seq < MAX_SEQ else None


def _optional_int(document: dict[str, Any], name: str, seq: int) -> int | None:
    value = document.get(name)
    if value is None or _is_int(value):
        return value
    raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'{name}' must be an integer or null, got {_kind(value)}", seq)


def _optional_str(document: dict[str, Any], name: str, seq: int) -> str | None:
    value = document.get(name)
    if value is None or isinstance(value, str):
        return value
    raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'{name}' must be a string or null, got {_kind(value)}", seq)


def _point(value: Any, index: int, seq: int) -> Point:
    """One ``[x, y, …]`` entry: finite numbers, ``x, y`` in [0, 1], extras ignored."""
    if not isinstance(value, list) or len(value) < 2:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"points[{index}] must be an array [x, y, …]", seq)
    for axis, number in enumerate(value):
        if not _is_number(number):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                f"points[{index}][{axis}] must be a finite number, got {_kind(number)}", seq)
    for axis in (0, 1):
        if not 0.0 <= value[axis] <= 1.0:
            raise ProtocolError(ErrorCode.OUT_OF_RANGE,
                                f"points[{index}][{axis}] = {value[axis]:.6g} is outside [0, 1]", seq)
    return (float(value[0]), float(value[1]))


def _decode_stroke(document: dict[str, Any], seq: int) -> Stroke:
    stroke_id = document.get("id")
    if not _is_int(stroke_id) or not 0 <= stroke_id < MAX_SEQ:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'id' must be an integer in 0 .. 2**53-1, "
                            f"got {_kind(stroke_id)}", seq)
    points = document.get("points")
    if not isinstance(points, list):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'points' must be an array, got {_kind(points)}", seq)
    return Stroke(seq, stroke_id, tuple(_point(value, index, seq) for index, value in enumerate(points)))


def _decode_select(document: dict[str, Any], seq: int) -> Select:
    for name in ("output", "hidden"):
        if name not in document:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'{name}' is missing (null means unset)", seq)
    output = _optional_int(document, "output", seq)
    hidden = _optional_int(document, "hidden", seq)
    versus = _optional_int(document, "versus", seq)
    for name, value in (("output", output), ("versus", versus)):
        if value is not None and not 0 <= value < N_CLASSES:
            raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"{name} {value} is outside 0 .. {N_CLASSES - 1}", seq)
    if hidden is not None and hidden < 0:
        raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"hidden {hidden} is negative", seq)
    if versus is not None and versus == output:
        raise ProtocolError(ErrorCode.BAD_VERSUS, f"versus {versus} equals output: a class against itself", seq)
    if versus is not None and output is None:
        raise ProtocolError(ErrorCode.BAD_VERSUS, "versus needs an output class to contrast it with", seq)
    return Select(seq, output, hidden, versus)


def _decode_configure(document: dict[str, Any], seq: int) -> Configure:
    knockout = document.get("knockout")
    if knockout is not None and not (isinstance(knockout, list) and all(_is_int(unit) for unit in knockout)):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"'knockout' must be an array of hidden-unit indices or null, got {_kind(knockout)}", seq)
    model, method, rule = (_optional_str(document, name, seq) for name in ("model", "method", "rule"))
    return Configure(seq, model, method, rule, knockout=None if knockout is None else tuple(knockout))


def _decode_counterfactual(document: dict[str, Any], seq: int) -> CounterfactualRequest:
    target = _optional_int(document, "target", seq)
    if target is not None and not 0 <= target < N_CLASSES:
        raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"target {target} is outside 0 .. {N_CLASSES - 1}", seq)
    return CounterfactualRequest(seq, target)


def _decode_compare(document: dict[str, Any], seq: int) -> Compare:
    methods = document.get("methods")
    if not isinstance(methods, list) or not all(isinstance(name, str) for name in methods):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "'methods' must be an array of method names", seq)
    if not 1 <= len(methods) <= MAX_COMPARE_METHODS:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"'methods' holds {len(methods)} names, expected 1 .. {MAX_COMPARE_METHODS}", seq)
    return Compare(seq, tuple(methods))


def _decode_ack(document: dict[str, Any]) -> Ack:
    frame = document.get("frame")
    if not _is_int(frame) or not 1 <= frame < MAX_SEQ:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"'frame' must be an integer in 1 .. 2**53-1, "
                            f"got {_kind(frame)}")
    return Ack(frame)


_DECODERS: dict[str, Callable[[dict[str, Any], int], Message]] = {
    "stroke": _decode_stroke,
    "select": _decode_select,
    "configure": _decode_configure,
    "clear": lambda document, seq: Clear(seq),
    "undo": lambda document, seq: Undo(seq),
    "compare": _decode_compare,
    "counterfactual": _decode_counterfactual,
    "sanity": lambda document, seq: SanityCheck(seq),
}


@dataclass(frozen=True)
class Options:
    """What a visitor may choose: model name → hidden width H, method name → cost, rules."""

    models: dict[str, int]
    methods: dict[str, str]
    rules: tuple[str, ...]
    default_model: str


@dataclass(frozen=True)
class Limits:
    """Drawing size limits of one visitor (sent in ``welcome.limits``)."""

    max_points_per_message: int = 512
    max_points: int = 4096
    max_strokes: int = 64


@dataclass(frozen=True)
class View:
    """An immutable snapshot of one visitor's state: what a frame is computed from.

    ``strokes``: the drawing, each stroke a tuple of ``(x, y)`` canvas
    fractions.  ``seq``: the last applied client ``seq`` (``None`` before any).
    """

    seq: int | None
    strokes: tuple[tuple[Point, ...], ...]
    model: str
    method: str
    rule: str
    output: int | None
    hidden: int | None
    versus: int | None = None
    knockout: tuple[int, ...] = ()


@dataclass(frozen=True)
class Effect:
    """What an applied message asks the I/O layer to send next.

    ``welcome``: a new welcome (the model changed) before the next frame.
    ``frame``: a new frame.  ``compare``: a comparison of these methods.
    ``counterfactual``: a counterfactual of the drawing in ``view`` (the
    state right after the request) for ``target`` (``None``: the runner-up).
    ``sanity``: the sanity checks of the current map.
    """

    welcome: bool = False
    frame: bool = True
    compare: tuple[str, ...] = ()
    counterfactual: "CounterfactualAsk | None" = None
    sanity: bool = False


@dataclass(frozen=True)
class CounterfactualAsk:
    """A counterfactual to compute: ``target`` (``None``: runner-up) for the drawing of ``view``."""

    view: View
    target: int | None


@dataclass
class VisitorState:
    """One visitor's drawing, selection and configuration, changed only by :meth:`apply`."""

    options: Options
    limits: Limits
    seq: int | None = None
    strokes: list[list[Point]] = field(default_factory=list)
    stroke_ids: list[int] = field(default_factory=list)
    highest_stroke_id: int = -1
    n_points: int = 0
    model: str = ""
    method: str = DEFAULT_METHOD
    rule: str = DEFAULT_RULE
    output: int | None = None
    hidden: int | None = None
    versus: int | None = None
    knockout: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.model = self.model or self.options.default_model

    @property
    def hidden_width(self) -> int:
        """H of the visitor's current model."""
        return self.options.models[self.model]

    def view(self) -> View:
        """Snapshot the state; later :meth:`apply` calls do not change the snapshot."""
        return View(self.seq, tuple(tuple(stroke) for stroke in self.strokes), self.model,
                    self.method, self.rule, self.output, self.hidden, self.versus, self.knockout)

    def apply(self, message: Message) -> Effect:
        """Apply ``message`` or raise :class:`ProtocolError`, leaving the state unchanged."""
        if self.seq is not None and message.seq <= self.seq:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                f"seq {message.seq} does not increase (last {self.seq})", message.seq)
        effect = self._apply(message)
        self.seq = message.seq
        return effect

    def _apply(self, message: Message) -> Effect:
        match message:
            case Stroke():
                return self._stroke(message)
            case Select():
                return self._select(message)
            case Configure():
                return self._configure(message)
            case Clear():
                self.strokes, self.stroke_ids, self.n_points = [], [], 0
                return Effect()
            case Undo():
                if self.strokes:
                    self.n_points -= len(self.strokes.pop())
                    self.stroke_ids.pop()
                return Effect()
            case Compare():
                self._check_names("method", message.methods, self.options.methods, message.seq)
                return Effect(frame=False, compare=message.methods)
            case CounterfactualRequest():
                view = dataclasses.replace(self.view(), seq=message.seq)
                return Effect(frame=False, counterfactual=CounterfactualAsk(view, message.target))
            case SanityCheck():
                return Effect(frame=False, sanity=True)

    def _stroke(self, message: Stroke) -> Effect:
        appends = bool(self.stroke_ids) and message.id == self.stroke_ids[-1]
        if not appends and message.id <= self.highest_stroke_id:
            last = self.stroke_ids[-1] if self.stroke_ids else None
            raise ProtocolError(ErrorCode.BAD_STROKE_ID, f"stroke id {message.id} is neither the last stroke "
                                f"({last}) nor larger than every earlier id ({self.highest_stroke_id})",
                                message.seq)
        count = len(message.points)
        if count > self.limits.max_points_per_message:
            raise ProtocolError(ErrorCode.TOO_MANY_POINTS, f"{count} points in one message, at most "
                                f"{self.limits.max_points_per_message}", message.seq)
        if self.n_points + count > self.limits.max_points:
            raise ProtocolError(ErrorCode.TOO_MANY_POINTS, f"the drawing would hold {self.n_points + count} "
                                f"points, at most {self.limits.max_points}", message.seq)
        if not appends and len(self.strokes) + 1 > self.limits.max_strokes:
            raise ProtocolError(ErrorCode.TOO_MANY_STROKES, f"the drawing would hold {len(self.strokes) + 1} "
                                f"strokes, at most {self.limits.max_strokes}", message.seq)
        if appends:
            self.strokes[-1].extend(message.points)
        else:
            self.strokes.append(list(message.points))
            self.stroke_ids.append(message.id)
            self.highest_stroke_id = message.id
        self.n_points += count
        return Effect()

    def _select(self, message: Select) -> Effect:
        if message.hidden is not None and message.hidden >= self.hidden_width:
            raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"hidden {message.hidden} is outside 0 .. "
                                f"{self.hidden_width - 1} of model {self.model!r}", message.seq)
        self.output, self.hidden, self.versus = message.output, message.hidden, message.versus
        return Effect()

    def _configure(self, message: Configure) -> Effect:
        for kind, name, known in (("model", message.model, self.options.models),
                                  ("method", message.method, self.options.methods),
                                  ("rule", message.rule, self.options.rules)):
            if name is not None:
                self._check_names(kind, (name,), known, message.seq)
        new_model = message.model if message.model != self.model else None
        width = self.hidden_width if new_model is None else self.options.models[new_model]
        if message.knockout is not None:
            self._check_knockout(message.knockout, width, message.seq)
        if new_model is not None:
            # Neurons and knock-outs are indices of the old model's hidden layer.
            self.model, self.output, self.hidden, self.versus, self.knockout = new_model, None, None, None, ()
        self.method = message.method or self.method
        self.rule = message.rule or self.rule
        if message.knockout is not None:
            self.knockout = tuple(sorted(message.knockout))
        return Effect(welcome=new_model is not None)

    @staticmethod
    def _check_knockout(units: tuple[int, ...], width: int, seq: int) -> None:
        if len(units) > width:
            raise ProtocolError(ErrorCode.TOO_MANY_KNOCKOUTS, f"knockout lists {len(units)} units, the model has "
                                f"{width}", seq)
        for unit in units:
            if not 0 <= unit < width:
                raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"knockout unit {unit} is outside 0 .. {width - 1}", seq)
        if len(set(units)) != len(units):
            raise ProtocolError(ErrorCode.DUPLICATE_KNOCKOUT, "knockout lists a unit more than once", seq)

    @staticmethod
    def _check_names(kind: str, names: tuple[str, ...], known: Any, seq: int) -> None:
        for name in names:
            if name not in known:
                raise ProtocolError(ErrorCode.UNKNOWN_OPTION, f"unknown {kind} {name[:40]!r}; expected one of "
                                    f"{', '.join(known)}", seq)
