"""The runtime's dependencies: what it uses of their internals, and the bounds that follow.

The runtime subclasses Uvicorn's HTTP protocol, uvicorn-worker's worker and
replaces a Gunicorn arbiter's signal handler; its request path reaches into Django
and asgiref. Each such dependency admits only the series the tests have run on
(runtime/pyproject.toml), and a test here, or next to the code that uses it, fails
when a new release changes what is used, naming the place to look.
"""

from __future__ import annotations

import inspect
import re
import textwrap
import tomllib
from importlib.metadata import version
from pathlib import Path

import httptools
import pytest
from gunicorn.arbiter import Arbiter
from gunicorn.config import KNOWN_SETTINGS
from gunicorn.workers.base import Worker
from packaging.requirements import Requirement
from packaging.version import Version
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = tomllib.loads((ROOT / "runtime" / "pyproject.toml").read_text())["project"]
SERVICE = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Each dependency whose internals the runtime uses, and the test of what it uses.
INTERNALS_USED = {
    "django": (
        "tests/runtime/server/test_handler.py",
        "test_the_django_internals_the_handler_uses_are_still_there",
    ),
    "asgiref": (
        "tests/runtime/server/test_handler.py",
        "test_asgiref_runs_async_to_sync_on_the_loop_its_threadlocal_names",
    ),
    "uvicorn": (__file__, "test_the_uvicorn_internals_the_protocol_and_worker_use"),
    "uvicorn-worker": (__file__, "test_the_uvicorn_worker_internals_the_worker_overrides"),
    "httptools": (__file__, "test_httptools_reports_a_callbacks_exception_as_its_context"),
    "gunicorn": (__file__, "test_the_gunicorn_internals_the_drain_and_worker_use"),
    # The access log writes python-json-logger's line itself; a histogram's
    # observations are added to prometheus-client's values in a batch.
    "python-json-logger": (
        "tests/runtime/observability/test_access_log.py",
        "test_the_direct_line_is_the_one_logging_writes",
    ),
    "prometheus-client": (
        "tests/runtime/observability/test_metrics_batched.py",
        "test_a_scrape_reads_the_same_as_when_each_request_wrote_its_own",
    ),
}


def requirements() -> dict[str, Requirement]:
    return {Requirement(line).name: Requirement(line) for line in RUNTIME["dependencies"]}


@pytest.mark.parametrize("name", sorted(INTERNALS_USED))
def test_a_dependency_whose_internals_are_used_admits_only_the_tested_series(name: str) -> None:
    requirement = requirements()[name]
    operators = {spec.operator for spec in requirement.specifier}
    assert operators == {">=", "<"}, f"{requirement}: a lower and an upper bound"
    assert Version(version(name)) in requirement.specifier, f"{version(name)} outside {requirement}"
    path, test = INTERNALS_USED[name]
    assert f"def {test}(" in (ROOT / path).read_text(), f"{path}: {test} is missing"


def test_the_django_series_are_declared_tested_and_locked_alike() -> None:
    """The classifiers, the requirement's bounds and the test matrix's groups (root
    pyproject, one environment each in uv.lock) name the same series."""
    classified = sorted(
        (
            line.rsplit(" :: ", 1)[1]
            for line in RUNTIME["classifiers"]
            if re.fullmatch(r"Framework :: Django :: \d+\.\d+", line)
        ),
        key=Version,
    )
    groups = sorted(
        (
            name.removeprefix("django-")
            for name in SERVICE["dependency-groups"]
            if re.fullmatch(r"django-\d+\.\d+", name)
        ),
        key=Version,
    )
    assert classified == groups
    bounds = {spec.operator: spec.version for spec in requirements()["django"].specifier}
    assert bounds[">="] == groups[0]
    major, minor = map(int, groups[-1].split("."))
    assert bounds["<"] == f"{major}.{minor + 1}"
    conflicts = {entry["group"] for entry in SERVICE["tool"]["uv"]["conflicts"][0]}
    assert conflicts == {f"django-{series}" for series in groups}


# What the runtime uses of each (a failure names the runtime's module to look at) ------


def source(function: object) -> str:
    return textwrap.dedent(inspect.getsource(function))  # type: ignore[arg-type]


UVICORN_DATA_RECEIVED = """\
def data_received(self, data: bytes) -> None:
    self._unset_keepalive_if_required()

    try:
        self.parser.feed_data(data)
    except httptools.HttpParserError:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)
        return
    except httptools.HttpParserUpgrade:
        if self._should_upgrade():
            self.handle_websocket_upgrade()
        else:
            self._unsupported_upgrade_warning()
"""

UVICORN_SHUTDOWN = '''\
def shutdown(self) -> None:
    """
    Called by the server to commence a graceful shutdown.
    """
    if self.cycle is None or self.cycle.response_complete:
        self.transport.close()
    else:
        self.cycle.keep_alive = False
'''


def test_the_uvicorn_internals_the_protocol_and_worker_use() -> None:
    # server/protocol.py: HttpProtocol._feed is data_received with one
    # more except clause, _close_if_idle what shutdown does for an idle connection,
    # and the bounds (head and send deadlines, connections) hook into the rest.
    assert source(HttpToolsProtocol.data_received) == UVICORN_DATA_RECEIVED
    assert source(HttpToolsProtocol.shutdown) == UVICORN_SHUTDOWN
    hooks = (
        *("on_message_begin", "on_url", "on_header", "on_headers_complete"),
        *("on_message_complete", "on_response_complete", "_start_asgi_task"),
        *("connection_made", "connection_lost", "pause_writing", "resume_writing"),
    )
    for hook in hooks:
        assert hook in HttpToolsProtocol.__dict__, hook
    assert 'self.url = b""' in source(HttpToolsProtocol.on_message_begin)
    assert "self.cycle = RequestResponseCycle(" in source(HttpToolsProtocol.on_headers_complete)
    state = source(HttpToolsProtocol.__init__)
    for name in ("connections", "pipeline", "flow", "cycle", "timeout_keep_alive_task"):
        assert f"self.{name}" in state, name
    # What the protocol makes up for: the keep-alive timer kept on a reset connection,
    # and a pipelined request started as soon as the response before it completes.
    lost = source(HttpToolsProtocol.connection_lost)
    assert "if exc is None:\n        self.transport.close()\n        self._unset" in lost
    completed = source(HttpToolsProtocol.on_response_complete)
    assert "cycle, app = self.pipeline.pop()\n        self._start_asgi_task(" in completed
    cycle = source(RequestResponseCycle.__init__)
    for flag in ("disconnected = False", "keep_alive = keep_alive", "response_complete = False"):
        assert f"self.{flag}" in cycle, flag
    assert "self.message_event = message_event" in cycle
    assert "self.write_paused = False" in source(FlowControl.__init__)
    # server/worker.py: the Server it runs and the Config it changes.
    assert list(inspect.signature(Server.serve).parameters) == ["self", "sockets"]
    init = source(Server.__init__)
    for flag in ("self.started = False", "self.should_exit = False", "self.force_exit = False"):
        assert flag in init, flag
    config = inspect.signature(Config.__init__).parameters
    options = ("app", "loop", "http", "lifespan", "timeout_graceful_shutdown", "access_log")
    for option in (*options, "server_header", "callback_notify"):
        assert option in config, option
    # server/websocket_protocol.py: the head alone is handed to the WebSocket protocol
    # (frames are fed one at a time after it); a ping's pong is written where it is
    # parsed, a message queued by send_receive_event_to_app and reading paused there,
    # resumed by receive() only while it paused it (read_paused, never set here).
    assert 'protocol.data_received(b"".join(output))' in source(
        HttpToolsProtocol.handle_websocket_upgrade
    )
    sansio = WebSocketsSansIOProtocol
    assert "self.handle_ping()" in source(sansio.handle_events)
    assert "self.send_receive_event_to_app()" in source(sansio.handle_text)
    assert "self.transport.pause_reading()" in source(sansio.send_receive_event_to_app)
    assert "if self.read_paused and self.queue.empty():" in source(sansio.receive)
    assert "self.conn.parser_exc is not None" in source(sansio.data_received)
    # A handshake websockets cannot parse is answered there (logged here first); one
    # the application refuses with an HTTP response is complete once it starts.
    assert "self.handle_handshake_exception()" in source(sansio.data_received)
    assert "self.conn.data_to_send()" in source(sansio.handle_handshake_exception)
    refused = re.escape('self.initial_response = (message["status"], headers, b"")\n')
    assert re.search(refused + r"\s+self\.handshake_complete = True", source(sansio.send))
    state = source(sansio.__init__)
    for name in ("queue", "frames", "curr_msg_data_type", "writable", "close_timeout"):
        assert f"self.{name}" in state, name


UVICORN_WORKER_SERVE = """\
async def _serve(self) -> None:
    self.config.app = self.wsgi
    server = Server(config=self.config)
    self._install_sigquit_handler()
    await server.serve(sockets=self.sockets)
    if not server.started:
        sys.exit(Arbiter.WORKER_BOOT_ERROR)
"""


def test_the_uvicorn_worker_internals_the_worker_overrides() -> None:
    # server/worker.py: UvicornWorker._serve is this, with the heartbeat and the exits
    # added; _install_sigquit_handler is replaced; CONFIG_KWARGS reach the Config.
    assert source(UvicornWorker._serve) == UVICORN_WORKER_SERVE
    assert "_install_sigquit_handler" in UvicornWorker.__dict__
    assert "self._serve()" in source(UvicornWorker.run)
    init = source(UvicornWorker.__init__)
    assert "config_kwargs.update(self.CONFIG_KWARGS)" in init
    assert "self.config = Config(**config_kwargs)" in init


def test_httptools_reports_a_callbacks_exception_as_its_context() -> None:
    # server/protocol.py tells a refused request head from a malformed one this way.
    class Refusing:
        def on_url(self, url: bytes) -> None:
            raise LookupError("refused")

    parser = httptools.HttpRequestParser(Refusing())
    with pytest.raises(httptools.HttpParserError) as caught:
        parser.feed_data(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(caught.value.__context__, LookupError)
    assert parser.get_method() == b"GET"


def test_the_gunicorn_internals_the_drain_and_worker_use() -> None:
    # server/drain.py replaces handle_term on the arbiter: signals are dispatched by
    # name from the main loop, and the stock handler starts the graceful stop.
    assert 'getattr(self, "handle_%s" % signame' in source(Arbiter.run)
    assert "raise StopIteration" in source(Arbiter.handle_term)
    # server/memory.py: the master's count of workers, raised for those draining for
    # memory, is what manage_workers spawns and stops workers to reach.
    manage = source(Arbiter.manage_workers)
    assert "if len(self.WORKERS) < self.num_workers:" in manage
    assert "while len(workers) > self.num_workers:" in manage
    assert "return self._num_workers" in source(Arbiter._get_num_workers)
    # server/worker.py
    assert Arbiter.WORKER_BOOT_ERROR == 3
    assert callable(Worker.notify)
    used = ("timeout", "graceful_timeout", "threads", "workers", "worker_connections")
    limits = ("limit_request_line", "limit_request_fields", "limit_request_field_size")
    assert set(used + limits) - {setting.name for setting in KNOWN_SETTINGS} == set()
