"""What Django's error reports show: never the password of a URL.

Django's ``SafeExceptionReporterFilter`` hides a setting by its *name* (``PASSWORD``,
``SECRET_KEY``, ``API_TOKEN``...), so ``DATABASES``' password is hidden, but a
secret inside a value is shown as it is: ``CACHES``' ``redis://:password@...``
location, a service's URL setting such as ``EXAMPLE_UPSTREAM_URL``, a URL in a
traceback's local variables. This filter also stars those, by the runtime's one
rule (:mod:`django_k8s_runtime.masking`), on ``DEBUG``'s error page and
in the error reports Django mails to ``ADMINS``. The composition root installs it
unless a project chose a filter of its own (``DEFAULT_EXCEPTION_REPORTER_FILTER``).
"""

from __future__ import annotations

from typing import Any

from django.views.debug import SafeExceptionReporterFilter

from django_k8s_runtime.masking import redact_url

FILTER = "django_k8s_runtime.reporting.SafeURLsExceptionReporterFilter"


def _redacted(value: Any) -> Any:
    return redact_url(value) if isinstance(value, str) else value


class SafeURLsExceptionReporterFilter(SafeExceptionReporterFilter):
    def cleanse_setting(self, key: Any, value: Any) -> Any:
        # Django recurses into dicts and lists through this method, so nested
        # values (CACHES["default"]["LOCATION"]) come through here too.
        return _redacted(super().cleanse_setting(key, value))

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        return [
            (name, _redacted(value))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]
