"""Whether tracing is on, and the start-up rules of OpenTelemetry's variables
(django_k8s_runtime/tracing.py), on snapshots of environments of the test's own.
The same lines from the real ``gunicorn`` and ``check-env``: test_check_env.py."""

from __future__ import annotations

import pytest

from django_k8s_runtime import env, tracing

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SERVICE_NAME": "shop"}


def problems(environ: dict[str, str]) -> list[str]:
    return tracing.problems(env.load(environ))


@pytest.mark.parametrize(
    ("environ", "on", "endpoint"),
    [
        ({}, False, ""),
        (ENDPOINT, True, "http://collector:4318/v1/traces"),
        (
            {**ENDPOINT, "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/otlp/"},
            True,
            "https://collector:4318/otlp/v1/traces",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/spans", **ENDPOINT},
            True,
            "http://c:4318/spans",
        ),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False, "http://collector:4318/v1/traces"),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False, "http://collector:4318/v1/traces"),
    ],
)
def test_tracing_is_on_exactly_when_an_endpoint_is_set_and_no_switch_is_off(
    environ, on, endpoint
) -> None:
    snapshot = env.load(environ)
    assert (tracing.is_on(snapshot), tracing.endpoint(snapshot)) == (on, endpoint)
    assert problems(environ) == []


def test_an_otel_variable_the_runtime_does_not_read_is_refused_by_name_only() -> None:
    lines = problems({**ENDPOINT, "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cret"})
    assert lines == [
        "OTEL_EXPORTER_OTLP_HEADERS is set, but the runtime does not read it: of "
        "OpenTelemetry's variables it reads those the documentation's Configuration page lists "
        "(Traces), and refuses the others rather than let the SDK read them unchecked; "
        "remove it."
    ]
    assert "s3cret" not in " ".join(problems({"OTEL_EXPORTER_OTLP_HEADERS": "s3cret"}))


def test_a_tracing_setting_without_an_endpoint_has_no_effect() -> None:
    assert problems({"OTEL_SERVICE_NAME": "shop", "TRACE_PROBES": "true"}) == [
        "OTEL_SERVICE_NAME has no effect because no OTLP endpoint is set (tracing off); set "
        "OTEL_EXPORTER_OTLP_ENDPOINT or remove OTEL_SERVICE_NAME.",
        "TRACE_PROBES has no effect because no OTLP endpoint is set (tracing off); set "
        "OTEL_EXPORTER_OTLP_ENDPOINT or remove TRACE_PROBES.",
    ]
    # A switch turned off keeps the rest for when it is turned on again.
    assert problems({**ENDPOINT, "OTEL_SDK_DISABLED": "true", "OTEL_TRACES_SAMPLER_ARG": "1"}) == []


def test_a_service_must_be_named() -> None:
    unnamed = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert problems(unnamed) == [
        "OTEL_SERVICE_NAME is empty and OTEL_RESOURCE_ATTRIBUTES has no service.name: every "
        "span would say unknown_service; name the service (OTEL_SERVICE_NAME=shop)."
    ]
    assert problems({**unnamed, "OTEL_RESOURCE_ATTRIBUTES": "service.name=shop"}) == []


def test_a_ratio_needs_a_sampler_that_takes_one() -> None:
    ratio = {**ENDPOINT, "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    assert problems({**ratio, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}) == []
    assert problems(ratio) == [
        "OTEL_TRACES_SAMPLER_ARG=0.1 has no effect because OTEL_TRACES_SAMPLER="
        "parentbased_always_on takes no ratio; use parentbased_traceidratio or traceidratio, "
        "or remove OTEL_TRACES_SAMPLER_ARG."
    ]


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        (
            "OTEL_TRACES_SAMPLER",
            "sometimes",
            "OTEL_TRACES_SAMPLER='sometimes' is not valid: expected one of parentbased_always_on, "
            "parentbased_traceidratio, parentbased_always_off, always_on, traceidratio, "
            "always_off.",
        ),
        (
            "OTEL_TRACES_SAMPLER_ARG",
            "1.5",
            "OTEL_TRACES_SAMPLER_ARG='1.5' is not valid: expected a number from 0 to 1, or empty.",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "collector:4318",
            "OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318' is not valid: expected an http:// or "
            "https:// URL, or empty.",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "grpc",
            "OTEL_EXPORTER_OTLP_PROTOCOL='grpc' is not valid: expected one of http/protobuf.",
        ),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "k8s.pod.name",
            "OTEL_RESOURCE_ATTRIBUTES='k8s.pod.name' is not valid: expected comma-separated "
            "key=value pairs, each key once, values percent-encoded "
            "(k8s.pod.name=web-1,deployment.environment.name=production), or empty.",
        ),
        (
            "OTEL_PROPAGATORS",
            "b3",
            "OTEL_PROPAGATORS='b3' is not valid: expected a comma-separated list of "
            "tracecontext, baggage, none (or empty).",
        ),
    ],
)
def test_a_bad_value_is_one_line(name: str, value: str, line: str) -> None:
    assert env.load({**ENDPOINT, name: value}).problems == [line]


def test_resource_attributes_are_read_as_opentelemetry_reads_them() -> None:
    snapshot = env.load({**ENDPOINT, "OTEL_RESOURCE_ATTRIBUTES": " a=1 , b = x%2Cy ,c=,"})
    assert snapshot.OTEL_RESOURCE_ATTRIBUTES == (("a", "1"), ("b", "x,y"), ("c", ""))


def test_without_the_extra_an_endpoint_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(tracing, "installed", lambda: False)  # the extra is installed here
    assert problems(ENDPOINT) == [
        "OTEL_EXPORTER_OTLP_ENDPOINT='http://collector:4318' turns tracing on, which needs "
        "OpenTelemetry's packages: install the runtime with its otel extra, "
        "django-k8s-runtime[otel], or remove the endpoint."
    ]
