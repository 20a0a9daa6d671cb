"""The model families of the store and their layer geometry, without torch (the manifest checks need it).

A manifest entry names its family in ``family``; an entry without one is an ``mlp`` (the store's
first family).  :func:`output_shapes` gives each module's output shape (batch left out) for a width
``hidden`` of ``fc1``: the manifest records it in ``architecture.shapes`` and
:mod:`model_store.manifest` checks it; :mod:`model_store.architecture` builds the networks.
"""

from .sizes import IMAGE_PX, INPUT_SIZE, N_CLASSES

MLP, CNN = "mlp", "cnn"
FAMILIES = (MLP, CNN)
DEFAULT_FAMILY = MLP  # of an entry without a "family" field

MLP_MODULES = ("flatten", "fc1", "relu", "fc2")
CNN_MODULES = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2")
CNN_CHANNELS = (8, 16)  # conv1, conv2: at most 16, so that every channel's tile fits on a phone
CNN_KERNEL = 5
CNN_POOL = 2
# 28 → conv 24 → pool 12 → conv 8 → pool 4
CNN_CONV_PX = (IMAGE_PX - CNN_KERNEL + 1, (IMAGE_PX - CNN_KERNEL + 1) // CNN_POOL - CNN_KERNEL + 1)
CNN_POOLED_PX = CNN_CONV_PX[1] // CNN_POOL
CNN_FLAT = CNN_CHANNELS[1] * CNN_POOLED_PX * CNN_POOLED_PX


def module_names(family: str) -> tuple[str, ...]:
    """The module names of ``family``'s ``Sequential``, in order (an interface: CRP conditions name them)."""
    return {MLP: MLP_MODULES, CNN: CNN_MODULES}[family]


def output_shapes(family: str, hidden: int) -> dict[str, list[int]]:
    """Each module's output shape without the batch dimension, for ``hidden`` units in ``fc1``."""
    if family == MLP:
        return {"flatten": [INPUT_SIZE], "fc1": [hidden], "relu": [hidden], "fc2": [N_CLASSES]}
    first, second = CNN_CHANNELS
    conv1, conv2 = CNN_CONV_PX
    return {"conv1": [first, conv1, conv1], "relu1": [first, conv1, conv1],
            "pool1": [first, conv1 // CNN_POOL, conv1 // CNN_POOL],
            "conv2": [second, conv2, conv2], "relu2": [second, conv2, conv2],
            "pool2": [second, CNN_POOLED_PX, CNN_POOLED_PX], "flatten": [CNN_FLAT],
            "fc1": [hidden], "relu3": [hidden], "fc2": [N_CLASSES]}


def family_of(entry: dict[str, object]) -> str:
    """The family a manifest entry names, :data:`DEFAULT_FAMILY` if it names none."""
    family = entry.get("family", DEFAULT_FAMILY)
    return family if isinstance(family, str) else repr(family)
