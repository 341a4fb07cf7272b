"""Scrape a test server's /metrics and read samples from it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx


def scrape(port: int) -> str:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


def scrape_published(port: int) -> str:
    """A scrape once every worker has published what it has counted so far: each
    adds its requests to what a scrape reads once a second (``PUBLISH_SECONDS``)."""
    from django_k8s_runtime.observability.metrics import PUBLISH_SECONDS

    time.sleep(PUBLISH_SECONDS + 0.3)
    return scrape(port)


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value; its labels given in the order the metric declares them."""
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = (
        rf"^{re.escape(name)}{{{re.escape(selector)}}} (\S+)$"
        if labels
        else rf"^{re.escape(name)} (\S+)$"
    )
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no {name}{{{selector}}} in:\n{text}"
    return float(match.group(1))


def total(text: str, name: str) -> float:
    """The sum of every sample of ``name``, whatever its labels."""
    pattern = rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$"
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


def scrape_until(port: int, holds: Callable[[str], bool], seconds: float) -> str:
    """Scrape until ``holds(text)`` (workers publish their gauges once a second, each
    on its own beat), for at most ``seconds``; the last scrape either way."""
    deadline = time.monotonic() + seconds
    while True:
        text = scrape(port)
        if holds(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def has(name: str, value: float, **labels: str) -> Callable[[str], bool]:
    """``holds`` for :func:`scrape_until`: that sample has that value."""

    def holds(text: str) -> bool:
        try:
            return sample(text, name, **labels) == value
        except AssertionError:
            return False

    return holds
