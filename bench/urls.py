"""The app's URLs plus the bench's own views, which are not in the app's URLs:
/bench/trivial, a JSON view that does no work (the latency baseline); /bench/one-redis-trip,
the same after one Redis round trip (item 2's floor for a cached page); and
/bench/peer/send_mail, the sync-send peer (bench/peer_views.py)."""

from django.core.cache import cache
from django.http import JsonResponse
from django.urls import include, path

from bench.peer_views import send_mail_view


def trivial(request):
    return JsonResponse({"ok": True})


def one_redis_trip(request):
    """What a cached list page cannot do without: one Redis round trip (a GET through
    django-redis, as the app's pipeline goes), then a small JSON answer."""
    return JsonResponse({"ok": cache.get("bench:one-redis-trip") is None})


urlpatterns = [
    path("bench/trivial", trivial),
    path("bench/one-redis-trip", one_redis_trip),
    path("bench/peer/send_mail", send_mail_view),
    path("", include("emailservice.urls")),
]
