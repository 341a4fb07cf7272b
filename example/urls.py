from django.urls import path

from example import views

urlpatterns = [
    path("hello", views.hello, name="hello"),
    path("items", views.items, name="items"),
]
