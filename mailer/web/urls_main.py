"""URLs of the account, send and sent-email pages."""

urlpatterns: list = []
