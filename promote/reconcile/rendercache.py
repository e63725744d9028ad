"""An agent's renders, kept in memory and found again by the content of their inputs.

``kustomize build`` is most of a pass's time (about 2 s of 3.5 s for 1,000 objects on a quiet
2-core machine: kustomize's own cost grows faster than linearly with the objects of one
overlay), and the same inputs always render the same objects. So a render is kept under what
it was made from: the blob of every path the environment's overlay reads (its folder, bases,
components, patches, generator files: ``kustomize.folder.input_paths``, an over-approximation)
and of every governance file (``promote.yaml``, ``environments/``, ``keys/``, policies), as
``promotion.scope.input_blobs`` selects them, the same notion of "the environment's inputs" the
trust chain uses. A revision whose input blobs equal an entry's renders to that entry's
objects, so a merge whose environment inputs equal a pre-rendered PR head's (a fast-forward,
or a merge of a branch main had not moved past) needs no render.

What an entry holds is what the render stage produced: the validated objects with their SOPS
ciphertext (decryption happens after, in memory, on every build), and the environment's
settings at those inputs. Nothing decrypted is ever kept here, and nothing here is written to
disk. Failed renders are not kept: the pass renders again and reports the error.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promote import config
from promote.promotion import scope

MAX_ENTRIES = 8  # the deployed revision, a few PR heads, a rollback target
# Objects held across entries (the newest entry is always kept): at 1,000 objects per render
# all MAX_ENTRIES fit; at 10,000 two do (the deployed revision and one PR head), so the
# agent's memory grows by one render, not eight.
MAX_OBJECTS = 20_000


@dataclass(frozen=True, slots=True)
class Rendered:
    """One render: its inputs and what it produced (objects still encrypted)."""

    inputs: frozenset[str]  # the overlay's input paths (``scope.Layout.inputs`` form)
    blobs: Mapping[str, str]  # ``scope.input_blobs`` of the tree it was rendered from
    objects: list[dict[str, Any]]  # validated, SOPS ciphertext intact; never mutated
    settings: config.EnvironmentConfig  # the environment's settings at those inputs

    def matches(self, env: str, blobs: Mapping[str, str]) -> bool:
        """Whether a tree (``path -> blob id``) has exactly this entry's input blobs."""
        layout = scope.Layout((env,), {env: self.inputs})
        return scope.input_blobs(env, layout, blobs) == self.blobs


class RenderCache:
    """The last renders of one environment (at most ``MAX_ENTRIES``, ``MAX_OBJECTS`` objects
    together), most recently used last."""

    def __init__(
        self, env: str, *, max_entries: int = MAX_ENTRIES, max_objects: int = MAX_OBJECTS
    ) -> None:
        self.env = env
        self._max = max_entries
        self._max_objects = max_objects
        self._entries: list[Rendered] = []
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def find(self, blobs: Mapping[str, str]) -> Rendered | None:
        with self._lock:
            for entry in reversed(self._entries):
                if entry.matches(self.env, blobs):
                    self._entries.remove(entry)
                    self._entries.append(entry)
                    self.hits += 1
                    return entry
            self.misses += 1
            return None

    def keep(self, entry: Rendered) -> None:
        with self._lock:
            self._entries = [e for e in self._entries if e.blobs != entry.blobs]
            self._entries.append(entry)
            del self._entries[: -self._max]
            while len(self._entries) > 1 and self._objects() > self._max_objects:
                del self._entries[0]

    def _objects(self) -> int:
        return sum(len(e.objects) for e in self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def entry_for(
    env: str, inputs: frozenset[str], tree_blobs: Mapping[str, str], **made: Any
) -> Rendered:
    """An entry for a render of a tree (``tree_blobs``: every file of it)."""
    layout = scope.Layout((env,), {env: inputs})
    return Rendered(inputs, scope.input_blobs(env, layout, tree_blobs), **made)
