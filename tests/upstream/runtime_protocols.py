"""Uvicorn's own protocol tests, run against the runtime's protocol classes.

Put beside Uvicorn's ``tests/protocols`` (imported by a ``conftest.py`` that
``test_uvicorn.py`` writes into its copy of Uvicorn's tests), this overrides the
two fixtures those tests take their classes from: ``UPSTREAM_SERVE=runtime`` gives
the runtime's HTTP and WebSocket protocols, ``uvicorn`` Uvicorn's own (the oracle),
under the same test ids. Every outcome is written as JSON to ``UPSTREAM_RESULTS``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

_outcomes: dict[str, dict[str, str]] = {}


def _runtime() -> bool:
    return os.environ.get("UPSTREAM_SERVE") == "runtime"


@pytest.fixture(params=[pytest.param("httptools", id="httptools")])
def http_protocol_cls() -> type[Any]:
    if _runtime():
        from django_k8s_runtime.server.protocol import HttpProtocol

        return HttpProtocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    return HttpToolsProtocol


@pytest.fixture(params=[pytest.param("websockets-sansio", id="websockets-sansio")])
def ws_protocol_cls() -> type[Any]:
    if _runtime():
        from django_k8s_runtime.server.websocket_protocol import GoingAwayWebSocketProtocol

        return GoingAwayWebSocketProtocol
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    return WebSocketsSansIOProtocol


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        detail = str(report.longrepr)[-2000:] if report.longrepr else ""
        _outcomes[report.nodeid] = {"outcome": report.outcome, "detail": detail}


def pytest_sessionfinish(session: pytest.Session) -> None:
    Path(os.environ["UPSTREAM_RESULTS"]).write_text(json.dumps(_outcomes, indent=1))
