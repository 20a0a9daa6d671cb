"""The sizes the whole demo shares: 28 × 28 input pixels, 10 classes (no torch, so the manifest checks need none).

The one place they are written: the server (raster, protocol, engine) imports them, and the page reads
them from ``welcome`` (``model.layers``).
"""

IMAGE_PX = 28  # MNIST's field, pixels on a side
IMAGE_SHAPE = (IMAGE_PX, IMAGE_PX)
INPUT_SIZE = IMAGE_PX * IMAGE_PX
N_CLASSES = 10
