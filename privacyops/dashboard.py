"""The staff dashboard on the admin index: a registry of tiles that the apps fill.

The core knows no app. Each app declares its tiles in `<app>/dashboard.py` with `register_tile`; those
modules are imported once at start-up by `PrivacyOpsConfig.ready()` (autodiscovery, as for admin.py).
A tile's `render(request)` returns a `Tile`, or None when this user may not see it: a tile knows which
model it counts, so checking the user's permission is the tile's job. Registering a key again replaces
the tile (re-imports are harmless). A tile that raises is logged and shown as unavailable, so one broken
app never takes the admin index down with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

SEVERITIES = ("ok", "info", "amber", "red")  # worst last


@dataclass(frozen=True)
class Flag:
    """Something a tile wants the staff to look at: a label, how many, where to go."""

    label: str
    count: int | None = None
    url: str = ""
    severity: str = "amber"


@dataclass
class Tile:
    title: str
    value: int | str | None = None
    url: str = ""
    severity: str = "ok"
    flags: list[Flag] = field(default_factory=list)
    description: str = ""
    key: str = ""

    @property
    def worst_severity(self) -> str:
        """The tile's own severity or its worst flag's, whichever is worse."""
        levels = [self.severity, *(f.severity for f in self.flags)]
        return max(levels, key=lambda s: SEVERITIES.index(s) if s in SEVERITIES else 0)


@dataclass(frozen=True)
class TileSpec:
    key: str
    title: str
    order: int
    render: Callable


_registry: dict[str, TileSpec] = {}


def register_tile(key: str, *, title: str, order: int, render: Callable) -> None:
    """Declare a tile. `render(request) -> Tile | None`; lower `order` comes first."""
    _registry[key] = TileSpec(key=key, title=title, order=order, render=render)


def unregister_tile(key: str) -> None:
    _registry.pop(key, None)


def registered_tiles() -> list[TileSpec]:
    return sorted(_registry.values(), key=lambda spec: (spec.order, spec.key))


def tiles_for(request) -> list[Tile]:
    """The tiles this request's user may see, rendered, in order."""
    tiles = []
    for spec in registered_tiles():
        try:
            tile = spec.render(request)
        except Exception:
            logger.exception("Dashboard tile %s failed to render", spec.key)
            tile = Tile(title=spec.title, value="unavailable", severity="red", description="This tile failed; see the logs.")
        if tile is None:
            continue
        tile.key = spec.key
        tile.title = tile.title or spec.title
        tiles.append(tile)
    return tiles
