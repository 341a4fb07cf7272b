"""The example app's thin views, through Django's test client, on the service's own
production settings (config.settings). Not collected with the rest: this pytest
process's Django is the runtime's test site, so test_views.py runs these in a pytest
of their own (``pytest --ds config.settings tests/project/example/views_in_process.py``).
"""

from __future__ import annotations

import pytest

from example import services
from example.models import Item

HTTPS = {"secure": True, "headers": {"host": "localhost"}}


@pytest.mark.django_db
def test_hello_answers_json_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/api/hello", {"name": "Kubernetes"}, **HTTPS)
    assert response.status_code == 200
    assert response.json() == {"message": "Hello, Kubernetes!"}


@pytest.mark.django_db
def test_items_runs_one_query_and_lists_newest_first(client, django_assert_num_queries):
    Item.objects.create(name="first")
    Item.objects.create(name="second")
    with django_assert_num_queries(1):
        response = client.get("/api/items", **HTTPS)
    assert [item["name"] for item in response.json()["items"]] == ["second", "first"]


@pytest.mark.django_db
def test_latest_items_is_bounded() -> None:
    Item.objects.bulk_create(Item(name=f"item {n}") for n in range(services.LATEST_LIMIT + 5))
    assert len(services.latest_items()) == services.LATEST_LIMIT


def test_views_only_answer_get(client):
    assert client.post("/api/hello", **HTTPS).status_code == 405


def test_plain_http_is_redirected_to_https(client):
    response = client.get("/api/hello", headers={"host": "localhost"})
    assert response.status_code == 301
    assert response["location"] == "https://localhost/api/hello"
