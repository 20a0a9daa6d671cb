"""Test-only fault injection into a server *process*: put this directory on ``PYTHONPATH``.

Python imports ``sitecustomize`` at start-up (the ``site`` module), in the
supervisor and in every server process it spawns.  This one wraps
``server.explain.engine.Engine.explain`` once that module is imported: a call
that selects hidden neuron :data:`HANGING_NEURON` never returns (its thread
sleeps until the process ends), as in ``tests/test_server_failures.py``'s
``HangingEngine``, which only reaches a server inside the test process.
"""

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

HANGING_NEURON = 13
TARGET = "server.explain.engine"


def hang_on_neuron(module: ModuleType) -> None:
    explain = module.Engine.explain
    never = threading.Event()

    def hanging_explain(self: Any, requests: Sequence[Any]) -> Any:
        if any(request.selection.hidden == HANGING_NEURON for request in requests):
            never.wait()
        return explain(self, requests)

    module.Engine.explain = hanging_explain


class Loader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        hang_on_neuron(module)


class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = Loader(spec.loader)
        return spec


sys.meta_path.insert(0, Finder())
