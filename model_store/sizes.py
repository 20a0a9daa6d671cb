"""The sizes the whole demo shares: 28 × 28 input pixels, 10 classes (no torch, so the manifest checks need none)."""

INPUT_SIZE = 28 * 28
N_CLASSES = 10
