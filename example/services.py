"""Business logic, kept out of views (HackSoft's Django styleguide): views parse
and render; this module decides."""

from __future__ import annotations

from typing import Any

from example.models import Item

LATEST_LIMIT = 10


def latest_items(limit: int = LATEST_LIMIT) -> list[dict[str, Any]]:
    return [
        {"id": item.id, "name": item.name, "created": item.created.isoformat()}
        for item in Item.objects.all()[:limit]
    ]


def greeting(name: str | None) -> dict[str, str]:
    return {"message": f"Hello, {name or 'world'}!"}
