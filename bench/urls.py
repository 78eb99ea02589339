"""The app's URLs plus the bench's own views, which are not in the app's URLs:
/bench/trivial, a JSON view that does no work (the latency baseline), and
/bench/peer/send_mail, the sync-send peer (bench/peer_views.py)."""

from django.http import JsonResponse
from django.urls import include, path

from bench.peer_views import send_mail_view


def trivial(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("bench/trivial", trivial),
    path("bench/peer/send_mail", send_mail_view),
    path("", include("emailservice.urls")),
]
