"""A photo of a digit on paper → the 28×28 image the model sees, made the way MNIST was made.

MNIST (LeCun et al. 1998, §III.A) scanned dark ink on light paper, size-normalised each digit so its
bounding box fits 20×20 pixels with the aspect ratio kept (anti-aliased), and centred it by its centre of
mass in the 28×28 field.  :func:`prepare_photo` does the same with a photo:

1. **grey**: decoded (JPEG, PNG, WebP, GIF, BMP; the EXIF orientation applied), as luminance;
2. **against the paper**: the paper's own brightness is estimated by a morphological closing far wider than a
   stroke (a shadow or a lamp's gradient is paper, not ink), and ink is how much darker a pixel is than the
   paper under it, ``1 − grey / paper``;
3. **threshold**: Otsu's threshold on that darkness, never below ``MIN_INK_CONTRAST`` (a blank sheet's grain
   is not ink); specks far smaller than the largest inked part are dropped;
4. **one digit**: inked parts whose columns lie apart by a clear gap are several digits, refused;
5. **crop to the ink, stroke width**: the darkness inside the crop, its strokes thickened or thinned to
   MNIST's width relative to the digit (``STROKE_FRACTION``: a ballpoint line on a large digit is much
   thinner than MNIST's pen);
6. **fit into 20×20** (longer side, aspect kept, area averaging), **centre of mass on** ``COM_PX`` in 28×28.

Pure functions, no I/O.  Errors are :class:`PhotoError` with a code of docs/protocol.md and a sentence that
states the limit.
"""

import io
import warnings
from enum import StrEnum

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model_store.sizes import IMAGE_PX, IMAGE_SHAPE
from server.protocol import ErrorCode, Photo, ProtocolError
from server.raster import BOX_PX, COM_PX, RasterCache, rasterize

# The longest side a decoded image may have (pixels); the page scales photos to PAGE_SIDE_PX before sending.
# Checked from the file's header before decoding: a small PNG can hold a huge blank image (a bomb).
MAX_SIDE_PX = 2048
MIN_SIDE_PX = 16
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
# Darkness (1 − grey / paper) below this is paper, whatever Otsu says: a blank sheet's grain and JPEG noise
# reach ~0.08 on the synthetic set's paper; a pencil line ~0.3, a pen 0.5–0.9.
MIN_INK_CONTRAST = 0.18
# Inked parts smaller than this share of the largest one are specks (dust, paper grain, a stray dot).
SPECK_SHARE = 0.04
# Ink in total below this share of the image's pixels is no digit at all.
MIN_INK_SHARE = 0.0004
# Two groups of inked parts are two digits when the gap between their columns exceeds this share of the
# taller group's height and each holds this much of the ink (a 5's detached bar, a broken 4, overlap).
DIGIT_GAP_SHARE = 0.15
DIGIT_INK_SHARE = 0.15
# MNIST's pen relative to the digit: strokes ~2.6 px wide in a 20-px box (the embedded digits' median).
STROKE_FRACTION = 2.6 / BOX_PX
# Strokes within this factor of MNIST's width are kept as they are.
STROKE_TOLERANCE = 1.35
# The paper's brightness: a closing this share of the longer side wide removes strokes but not shadows.
PAPER_KERNEL_SHARE = 0.08
PAPER_REDUCTION = 4
# The crop is brought to this longer side (pixels) before its strokes are measured and re-stroked: a
# fixed cost whatever the photo's resolution (thinning a 260-px crop took ~20 ms, an 80-px one ~1 ms).
WORK_SIDE_PX = 80


class PhotoErrorCode(StrEnum):
    """Why a photo was refused (docs/protocol.md, "photo")."""

    NOT_AN_IMAGE = "not_an_image"
    PHOTO_TOO_LARGE = "photo_too_large"
    NO_INK = "no_ink"
    SEVERAL_DIGITS = "several_digits"


class PhotoError(ValueError):
    """A refused photo: ``code`` for programs, ``message`` (states the limit) for people."""

    def __init__(self, code: PhotoErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def prepare_photo(data: bytes) -> np.ndarray:
    """The model's input for a photo or image file of one digit, dark on light paper.

    Parameters
    ----------
    data:
        The file's bytes (JPEG, PNG, WebP, GIF or BMP), at most ``MAX_SIDE_PX`` on its longer side.

    Returns
    -------
    numpy.ndarray
        ``(28, 28)`` uint8, 0 paper … 255 ink, row = y: MNIST's layout.

    Raises
    ------
    PhotoError
        ``not_an_image``, ``photo_too_large``, ``no_ink`` or ``several_digits``.
    """
    return digit_input(decode_grey(data))


def prepare_upload(message: Photo) -> Photo:
    """``message`` with its image file prepared into the model's ``input``; a refused photo raises
    :class:`~server.protocol.ProtocolError` with the code and sentence of its :class:`PhotoError`.
    CPU work of ~5–20 ms: the session runs it off the event loop."""
    if message.data is None:
        return message
    try:
        return Photo(message.seq, None, prepare_photo(message.data).tobytes())
    except PhotoError as error:
        raise ProtocolError(ErrorCode(error.code.value), error.message, message.seq) from None


def decode_grey(data: bytes) -> np.ndarray:
    """``(H, W)`` float32 luminance in [0, 1] of an image file, upright (EXIF orientation applied)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise PhotoError(PhotoErrorCode.NOT_AN_IMAGE,
                                 f"expected a {', '.join(FORMATS)} image, got {image.format or 'another format'}")
            width, height = image.size  # from the header: nothing decoded yet
            if max(width, height) > MAX_SIDE_PX:
                raise PhotoError(PhotoErrorCode.PHOTO_TOO_LARGE, f"the image is {width} × {height} pixels, at most "
                                 f"{MAX_SIDE_PX} on its longer side")
            if min(width, height) < MIN_SIDE_PX:
                raise PhotoError(PhotoErrorCode.NOT_AN_IMAGE, f"the image is {width} × {height} pixels, at least "
                                 f"{MIN_SIDE_PX} on each side")
            grey = ImageOps.exif_transpose(image).convert("L")
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        # Pillow refuses a header promising ~90 M pixels or more before we could read its size.
        raise PhotoError(PhotoErrorCode.PHOTO_TOO_LARGE, f"the image has far too many pixels, at most "
                         f"{MAX_SIDE_PX} on its longer side") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, PhotoError):
            raise
        raise PhotoError(PhotoErrorCode.NOT_AN_IMAGE, "the file is not an image that can be read "
                         f"({type(error).__name__})") from None
    return np.asarray(grey, dtype=np.float32) / np.float32(255.0)


def darkness(grey: np.ndarray) -> np.ndarray:
    """How much darker than the paper under it each pixel is, ``(H, W)`` float32 in [0, 1]."""
    # The paper varies slowly: estimated at a quarter of the resolution (a 51-px closing at full size
    # took ~110 ms of a 480 × 640 photo, this ~3 ms), then brought back to full size.
    height, width = grey.shape
    small = cv2.resize(grey, (max(1, width // PAPER_REDUCTION), max(1, height // PAPER_REDUCTION)),
                       interpolation=cv2.INTER_AREA)
    side = max(3, int(max(small.shape) * PAPER_KERNEL_SHARE) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    paper = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel)
    paper = cv2.GaussianBlur(paper, (0, 0), side / 4)  # the closing's blocky steps are not ink
    paper = cv2.resize(paper, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(1.0 - grey / np.maximum(paper, 1e-3), 0.0, 1.0).astype(np.float32)


def ink_mask(dark: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: the pixels of the digit's ink (thresholded, specks dropped); raises ``no_ink``."""
    level = np.clip(dark * 255.0, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(cv2.GaussianBlur(level, (3, 3), 0), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    threshold = max(otsu / 255.0, MIN_INK_CONTRAST)
    mask = (dark > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if not len(areas) or areas.sum() < MIN_INK_SHARE * dark.size:
        raise PhotoError(PhotoErrorCode.NO_INK, "no ink found: photograph one digit written dark on light paper")
    keep = np.flatnonzero(areas >= SPECK_SHARE * areas.max()) + 1
    _refuse_several(stats[keep], dark.shape[0])
    return np.isin(labels, keep)


def _refuse_several(parts: np.ndarray, image_height: int) -> None:
    """Raise ``several_digits`` when the inked parts (connected-component stats rows) form groups of
    columns apart by a clear gap, each with a fair share of the ink."""
    order = np.argsort(parts[:, cv2.CC_STAT_LEFT])
    groups: list[list[int]] = []
    right = -1
    for index in order:
        left = int(parts[index, cv2.CC_STAT_LEFT])
        height = int(parts[:, cv2.CC_STAT_HEIGHT].max())
        if groups and left - right <= DIGIT_GAP_SHARE * height:
            groups[-1].append(int(index))
        else:
            groups.append([int(index)])
        right = max(right, left + int(parts[index, cv2.CC_STAT_WIDTH]))
    ink = parts[:, cv2.CC_STAT_AREA].astype(np.float64)
    large = [group for group in groups if ink[group].sum() >= DIGIT_INK_SHARE * ink.sum()]
    if len(large) > 1:
        raise PhotoError(PhotoErrorCode.SEVERAL_DIGITS, f"{len(large)} digits side by side: photograph one digit "
                         "at a time")


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of ``mask``'s ink in pixels: its area over its skeleton's length."""
    skeleton = cv2.ximgproc.thinning(mask.astype(np.uint8) * 255)
    return float(mask.sum()) / max(1.0, float(np.count_nonzero(skeleton)))


def _restroke(ink: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ink`` and ``mask`` (a crop) with strokes brought to MNIST's width relative to the digit's box."""
    target = STROKE_FRACTION * max(mask.shape)
    width = stroke_width(mask)
    if width * STROKE_TOLERANCE >= target and width <= target * STROKE_TOLERANCE:
        return ink, mask
    radius = max(1, round(abs(target - width) / 2))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    if width < target:
        return cv2.dilate(ink, kernel), cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
    thinned = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
    if not thinned.any():  # a blob: keep it rather than erase it
        return ink, mask
    return np.where(thinned, ink, 0).astype(np.float32), thinned


def digit_input(grey: np.ndarray) -> np.ndarray:
    """``(28, 28)`` uint8 MNIST input of a grey ``(H, W)`` photo in [0, 1] (see :func:`prepare_photo`)."""
    dark = darkness(grey)
    mask = ink_mask(dark)
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    pad = 2
    top, bottom = max(0, rows[0] - pad), min(mask.shape[0], rows[-1] + pad + 1)
    left, right = max(0, columns[0] - pad), min(mask.shape[1], columns[-1] + pad + 1)
    crop_mask = mask[top:bottom, left:right]
    # The ink's own darkness, as MNIST's anti-aliased scans: a stroke's core is full ink.
    core = float(np.percentile(dark[mask], 75))
    ink = np.where(crop_mask, np.clip(dark[top:bottom, left:right] / max(core, 1e-3), 0.0, 1.0), 0.0)
    scale = WORK_SIDE_PX / max(crop_mask.shape)
    size = (max(1, round(crop_mask.shape[1] * scale)), max(1, round(crop_mask.shape[0] * scale)))
    shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    ink = cv2.resize(ink.astype(np.float32), size, interpolation=shrink)
    ink, _ = _restroke(ink, ink > 0.5)
    return _fit(ink)


def _fit(ink: np.ndarray) -> np.ndarray:
    """``ink`` (a crop, float in [0, 1]) with its longer side scaled to 20 px, its centre of mass on
    ``COM_PX``, in the 28×28 field, as uint8."""
    height, width = ink.shape
    scale = BOX_PX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(ink, size, interpolation=cv2.INTER_AREA)
    moments = cv2.moments(small)
    if moments["m00"] <= 0:
        raise PhotoError(PhotoErrorCode.NO_INK, "no ink found: photograph one digit written dark on light paper")
    # The centre of mass in pixel-index coordinates, moved onto COM_PX (a sub-pixel shift, as MNIST's).
    shift_x, shift_y = COM_PX - moments["m10"] / moments["m00"], COM_PX - moments["m01"] / moments["m00"]
    warp = np.array([[1, 0, shift_x], [0, 1, shift_y]], dtype=np.float32)
    field = cv2.warpAffine(small, warp, IMAGE_SHAPE, flags=cv2.INTER_LINEAR, borderValue=0.0)
    return np.clip(np.round(field * 255.0), 0, 255).astype(np.uint8)


def model_input(strokes: tuple[tuple[tuple[float, float], ...], ...], photo: bytes | None,
                cache: RasterCache | None = None) -> np.ndarray:
    """The 28×28 float32 image in [0, 1] a frame is computed from: the photo's (784 bytes, row-major) when
    the visitor sent one, else the strokes rasterised (``cache``: the visitor's ``RasterCache``)."""
    if photo is not None:
        return np.frombuffer(photo, dtype=np.uint8).reshape(IMAGE_PX, IMAGE_PX).astype(np.float32) / np.float32(255)
    return rasterize(strokes, cache)
