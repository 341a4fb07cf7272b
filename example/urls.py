from django.urls import path

from example import views

urlpatterns = [
    path("hello", views.hello, name="hello"),
    path("items", views.items, name="items"),
    path("upstream", views.upstream, name="upstream"),
    path("upstream/sync", views.upstream_sync, name="upstream-sync"),
]
