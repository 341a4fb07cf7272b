import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from example import services

logger = logging.getLogger(__name__)


@require_GET
def hello(request: HttpRequest) -> JsonResponse:
    """A JSON view that touches no database."""
    return JsonResponse(services.greeting(request.GET.get("name")))


@require_GET
def items(request: HttpRequest) -> JsonResponse:
    """A JSON view that runs one database query."""
    return JsonResponse({"items": services.latest_items()})


@require_GET
async def upstream(request: HttpRequest) -> JsonResponse:
    """An async view that waits on another service: it holds no thread meanwhile."""
    try:
        return JsonResponse(await services.upstream_quote())
    except services.UpstreamUnavailable as error:
        return _unavailable(error)


@require_GET
def upstream_sync(request: HttpRequest) -> JsonResponse:
    """The same, synchronous: one of the worker's threads waits for the answer."""
    try:
        return JsonResponse(services.upstream_quote_sync())
    except services.UpstreamUnavailable as error:
        return _unavailable(error)


def _unavailable(error: services.UpstreamUnavailable) -> JsonResponse:
    logger.warning("upstream unavailable: %s", error)
    return JsonResponse({"error": "upstream unavailable"}, status=503)
