"""The app's URLs plus /bench/trivial: a JSON view that does no work, the latency baseline."""

from django.http import JsonResponse
from django.urls import include, path


def trivial(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("bench/trivial", trivial),
    path("", include("emailservice.urls")),
]
