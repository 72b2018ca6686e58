"""Batch resolvers by field coordinate: one call answers a field for every parent of a level.

A field without one is resolved by its own resolver, called for every parent of the level
at once (its loaders batch what it reads).
"""

from __future__ import annotations

from hub.engine.run import BatchResolver

BATCHES: dict[str, BatchResolver] = {}
