"""The app's URLs plus the bench's own views, which are not in the app's URLs:
/bench/trivial, a JSON view that does no work (the latency baseline); /bench/one-redis-trip,
the same after one Redis round trip (item 2's floor for a cached page);
/bench/one-redis-trip-page, one Redis GET of a real cached page's JSON, answered as it is (item
2's floor with a page's bytes); /bench/api/page, the same page answered by a django-ninja
operation with the API's own bearer-token check and rate limit (item 2's floor for an API);
/bench/peer/send_mail, the sync-send peer (bench/peer_views.py); and /bench/floor/send, item
1's durable floor (bench/floor_views.py)."""

from django.core.cache import cache
from django.http import HttpResponse, JsonResponse
from django.urls import include, path

# PAGE_KEY: where /bench/one-redis-trip-page and /bench/api/page read their body; bench/listing.py
# stores it there (the app's cache: django-redis, the run's key prefix), the exact bytes
# GET /api/v1/emails?page=1 answered.
from bench.floor_api import PAGE_KEY
from bench.floor_api import api as floor_api
from bench.floor_views import floor_send_view
from bench.peer_views import send_mail_view


def trivial(request):
    return JsonResponse({"ok": True})


def one_redis_trip(request):
    """What a cached list page cannot do without: one Redis round trip (a GET through
    django-redis, as the app's pipeline goes), then a small JSON answer."""
    return JsonResponse({"ok": cache.get("bench:one-redis-trip") is None})


def one_redis_trip_page(request):
    """The same floor with a cached page's weight: one Redis GET (through django-redis) of the
    bytes of a real page answer (a few KB), written back as the body. No auth, no rate limit,
    no parsing."""
    body = cache.get(PAGE_KEY)
    if body is None:  # not stored (yet): the bench checks the answer before timing it
        return HttpResponse(status=404)
    return HttpResponse(body, content_type="application/json")


urlpatterns = [
    path("bench/trivial", trivial),
    path("bench/one-redis-trip", one_redis_trip),
    path("bench/one-redis-trip-page", one_redis_trip_page),
    path("bench/peer/send_mail", send_mail_view),
    path("bench/floor/send", floor_send_view),
    path("bench/api/", floor_api.urls),
    path("", include("emailservice.urls")),
]
