"""Which version of each model this process serves, and the switch to a newly promoted one without a restart.

``python -m model_store learn`` promotes a version by rewriting the model's
manifest entry (:mod:`model_store.versions`).  :meth:`Versions.watch` reads the
manifest every ``poll_s``; when a served model's sha256 has changed it loads
the new weights (verified against their hash, off the event loop), adds them
to the engine threads' models under a key of their own (``name@sha12``) and
makes that key current.  A session pins the keys current when it starts and
re-pins them when its visitor clears the pad (:class:`~server.protocol.Clear`),
so a visitor keeps the version their drawing began with; a reconnect is a new
session.  Earlier versions stay loaded (a few hundred kB each) for the sessions
still pinned to them.
"""

import asyncio
import logging
from pathlib import Path

from torch import nn

from model_store import load_model
from model_store.manifest import ModelStoreError, read_manifest

from .logs import event


class Versions:
    """Model name → the engine key of its current version, and each key's sha256.

    ``models``: the engine threads' models by key (:attr:`server.inference.jobs.EngineThreads.models`),
    extended here when a new version is served; the names start as their own keys.  ``hidden``: each
    name's hidden width, which a new version must keep (visitors' neuron indices and knock-outs refer to it).
    """

    def __init__(self, models: dict[str, nn.Module], sha256: dict[str, str], hidden: dict[str, int]) -> None:
        self.models = models
        self.hidden = hidden
        self.current = {name: name for name in sha256}
        self.sha256 = dict(sha256)  # key → sha256

    def pins(self) -> dict[str, str]:
        """The keys to compute a session's frames with, until it clears the pad."""
        return dict(self.current)

    def version(self, key: str) -> str:
        """The sha256 of the weights behind engine key ``key``."""
        return self.sha256[key]

    def serving(self, name: str) -> str:
        """The sha256 of the version new sessions of ``name`` get."""
        return self.sha256[self.current[name]]

    def install(self, name: str, sha256: str, model: nn.Module) -> str:
        """Serve ``model`` (weights ``sha256``) as ``name`` to sessions from now on; its engine key."""
        key = f"{name}@{sha256[:12]}"
        self.models[key] = model  # before it becomes current: a job may use it at once
        self.sha256[key] = sha256
        self.current[name] = key
        return key

    async def watch(self, store_dir: Path | None, poll_s: float) -> None:
        """Every ``poll_s``: serve any model whose manifest entry names other weights.  Runs until cancelled."""
        while True:
            await asyncio.sleep(poll_s)
            try:
                await self.refresh(store_dir)
            except (ModelStoreError, OSError, ValueError) as error:
                # A manifest caught mid-edit or a bad new version: keep serving what we have, say why.
                event("model_version_refused", logging.ERROR, error=str(error))

    async def refresh(self, store_dir: Path | None) -> None:
        manifest = await asyncio.to_thread(read_manifest, store_dir)
        for name in list(self.current):
            entry = manifest["models"].get(name)
            if entry is None or entry["sha256"] == self.serving(name):
                continue
            if entry["hidden"] != self.hidden[name]:
                raise ModelStoreError(f"model {name!r}: the new version has {entry['hidden']} hidden units, the "
                                      f"served one {self.hidden[name]}; restart the servers to change its shape")
            model = await asyncio.to_thread(load_model, name, store_dir)  # verified: size, sha256, tensors
            key = self.install(name, entry["sha256"], model)
            event("model_version_served", model=name, key=key, sha256=entry["sha256"], round=entry.get("round"))
