"""URLs of the provider, health and API token pages."""

urlpatterns: list = []
