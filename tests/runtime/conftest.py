"""tests/runtime/ runs on the runtime's own test site (tests/site/): while its tests
run, this repository's service (config/, example/) cannot be imported, in this process
or in any process they start (a server, a command). What passes here passes without
the service; tests/runtime/test_layers.py checks that the check holds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.without_the_service import without_the_service


@pytest.fixture(scope="package", autouse=True)
def the_service_hidden() -> Iterator[None]:
    with without_the_service():
        yield
