from django.apps import AppConfig


class ExampleConfig(AppConfig):
    """A small app showing where code goes: models, services (logic), thin views."""

    name = "example"
    default_auto_field = "django.db.models.BigAutoField"
