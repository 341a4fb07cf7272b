from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from example import services


@require_GET
def hello(request: HttpRequest) -> JsonResponse:
    """A JSON view that touches no database."""
    return JsonResponse(services.greeting(request.GET.get("name")))


@require_GET
def items(request: HttpRequest) -> JsonResponse:
    """A JSON view that runs one database query."""
    return JsonResponse({"items": services.latest_items()})
