from django.contrib import admin

from example.models import Item


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["name", "created"]
    search_fields = ["name"]
