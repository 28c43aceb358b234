"""URLs of the chat pages."""

urlpatterns: list = []
