"""Traces: whether they are on, the start-up rules of OpenTelemetry's variables, and
the request observer's tracer built from them (``observability/traces.py``).

**Tracing is on exactly when an OTLP endpoint is set** (``OTEL_EXPORTER_OTLP_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and neither of OpenTelemetry's switches
turns it off (``OTEL_SDK_DISABLED=true``, ``OTEL_TRACES_EXPORTER=none``), as metrics
are on exactly when ``METRICS_PORT`` is not 0. Off, nothing of OpenTelemetry is
imported and a request pays nothing for it.

The variables are OpenTelemetry's own, read by the registry like every other
(``env.py``), and their values handed to the SDK. The SDK also reads ``OTEL_*``
variables of its own accord (its span limits, its batch processor's), which the
runtime would neither show nor check: any ``OTEL_*`` variable the runtime does not
declare is refused at start-up, one line each, so none is read behind its back.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from django_k8s_runtime.env import DEFAULT, REGISTRY, TRACING, ConfigError, Snapshot

if TYPE_CHECKING:
    from collections.abc import Collection

    from django_k8s_runtime.observability.traces import RequestTracing

# What turns it on, and the switches that turn it off while an endpoint is set.
ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SWITCHES = ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER")
TRACES_PATH = "/v1/traces"
RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")


def endpoint(snapshot: Snapshot) -> str:
    """Where spans are sent: the traces endpoint as it is, else the base URL's
    ``/v1/traces`` (OpenTelemetry's rule for the two variables); empty when neither."""
    if snapshot.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:
        return str(snapshot.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    base: str = snapshot.OTEL_EXPORTER_OTLP_ENDPOINT
    return base.rstrip("/") + TRACES_PATH if base else ""


def switched_off(snapshot: Snapshot) -> bool:
    return bool(snapshot.OTEL_SDK_DISABLED or snapshot.OTEL_TRACES_EXPORTER == "none")


def is_on(snapshot: Snapshot) -> bool:
    return bool(endpoint(snapshot)) and not switched_off(snapshot)


def installed() -> bool:
    """Whether the ``otel`` extra's packages are there."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in (
            "opentelemetry.sdk",
            "opentelemetry.exporter.otlp.proto.http",
            "opentelemetry.instrumentation.psycopg",
        )
    )


def problems(snapshot: Snapshot) -> list[str]:
    """Every tracing mistake, one line each (``validation.RULES`` runs it)."""
    found = [
        f"{name} is set, but the runtime does not read it: of OpenTelemetry's variables it "
        "reads those the documentation's Configuration page lists (Traces), and refuses the "
        "others rather than let the SDK read them unchecked; remove it."
        for name in snapshot.undeclared
    ]
    try:
        return found + _setting_problems(snapshot)
    except ConfigError:  # a value that did not parse: its own line is listed
        return found


def _setting_problems(snapshot: Snapshot) -> list[str]:
    found: list[str] = []
    set_here = [
        name
        for name, variable in REGISTRY.items()
        if variable.section == TRACING and snapshot.source(name) != DEFAULT
    ]
    if not endpoint(snapshot):
        found += [
            f"{name} has no effect because no OTLP endpoint is set (tracing off); set "
            f"OTEL_EXPORTER_OTLP_ENDPOINT or remove {name}."
            for name in set_here
            if name not in SWITCHES
        ]
        return found
    if switched_off(snapshot):
        return found  # the switch keeps the rest for when it is turned on again
    if not installed():
        found.append(
            f"{_set_endpoint(snapshot)} turns tracing on, which needs OpenTelemetry's "
            "packages: install the runtime with its otel extra, django-k8s-runtime[otel], "
            "or remove the endpoint."
        )
    attributes = dict(snapshot.OTEL_RESOURCE_ATTRIBUTES)
    if not snapshot.OTEL_SERVICE_NAME and not attributes.get("service.name"):
        found.append(
            "OTEL_SERVICE_NAME is empty and OTEL_RESOURCE_ATTRIBUTES has no service.name: "
            "every span would say unknown_service; name the service (OTEL_SERVICE_NAME=shop)."
        )
    if (
        snapshot.OTEL_TRACES_SAMPLER_ARG is not None
        and snapshot.OTEL_TRACES_SAMPLER not in RATIO_SAMPLERS
    ):
        found.append(
            f"OTEL_TRACES_SAMPLER_ARG={snapshot.OTEL_TRACES_SAMPLER_ARG:g} has no effect "
            f"because OTEL_TRACES_SAMPLER={snapshot.OTEL_TRACES_SAMPLER} takes no ratio; use "
            "parentbased_traceidratio or traceidratio, or remove OTEL_TRACES_SAMPLER_ARG."
        )
    if "none" in snapshot.OTEL_PROPAGATORS and len(snapshot.OTEL_PROPAGATORS) > 1:
        found.append(
            f"OTEL_PROPAGATORS={','.join(snapshot.OTEL_PROPAGATORS)!r} names none with others; "
            "name the propagators, or none alone."
        )
    return found


def _set_endpoint(snapshot: Snapshot) -> str:
    name = next(name for name in ENDPOINTS if snapshot[name])
    return f"{name}={snapshot[name]!r}"


def request_tracing(
    snapshot: Snapshot, *, untraced_paths: Collection[str]
) -> RequestTracing | None:
    """The request observer's tracer, set up in each worker as it starts serving and
    shut down when it has served its last request; None when tracing is off."""
    if not is_on(snapshot):
        return None
    from django_k8s_runtime import __version__
    from django_k8s_runtime.observability import traces
    from django_k8s_runtime.server.worker_state import this_worker

    tracer = traces.RequestTracing(
        endpoint=endpoint(snapshot),
        service_name=snapshot.OTEL_SERVICE_NAME,
        resource_attributes=dict(snapshot.OTEL_RESOURCE_ATTRIBUTES),
        sampler=traces.sampler(snapshot.OTEL_TRACES_SAMPLER, snapshot.OTEL_TRACES_SAMPLER_ARG),
        propagators=snapshot.OTEL_PROPAGATORS,
        compression=snapshot.OTEL_EXPORTER_OTLP_COMPRESSION,
        timeout_seconds=snapshot.OTEL_EXPORTER_OTLP_TIMEOUT / 1000,
        untraced_paths=() if snapshot.TRACE_PROBES else untraced_paths,
        version=__version__,
    )
    this_worker.when_serving(tracer.start)  # after the fork, never in the master
    this_worker.when_finished(tracer.stop)  # every span out before the worker exits
    return tracer
