"""The settings Django's own suites run with (their ``test_sqlite``), with the
runner that serves them through the runtime."""

from test_sqlite import *  # noqa: F403 - Django's tests directory is on the path

TEST_RUNNER = "tests.upstream.django_runner.Runner"
