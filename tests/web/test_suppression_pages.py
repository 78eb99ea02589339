"""The suppression list page through the Django test client: search and paging, add, remove,
import and export, and one account's list apart from another's."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from mailer.models import Suppression
from mailer.services.suppressions import MAX_IMPORT_BYTES, suppression_add
from tests.web.test_provider_pages import error_of, web_fixture  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

URL = "/suppressions/"


def rows(response) -> list[str]:
    """The addresses listed, in order."""
    found = re.findall(r'<th scope="row" class="text-break">(.*?)</th>', response.content.decode())
    return [html.unescape(address) for address in found]


def csv_file(text: str | bytes, name: str = "list.csv") -> SimpleUploadedFile:
    data = text.encode() if isinstance(text, str) else text
    return SimpleUploadedFile(name, data, "text/csv")


@pytest.mark.parametrize(
    "path", [URL, f"{URL}export/"],
)  # fmt: skip
def test_pages_need_a_signed_in_person(client, path):
    response = client.get(path)
    assert response.status_code == 302 and "login" in response["Location"]


def test_the_page_follows_the_content_security_policy_and_is_in_the_nav(web, account):
    suppression_add(account=account, address="ann@example.org")
    page = web("get", URL).content.decode()
    assert "style=" not in page and "<style" not in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert re.search(r"<title>Suppression list · emailservice</title>", page) and "<h1" in page
    assert re.search(r'<a class="nav-link active" aria-current="page" href="/suppressions/">'
                     r"Suppressions</a>", page)  # fmt: skip
    assert 'href="/suppressions/export/"' in page and 'enctype="multipart/form-data"' in page
    assert page.count("csrfmiddlewaretoken") >= 3  # add, import, and each row's remove
    assert "Suppressions</a>" in web("get", "/tokens/").content.decode()


def test_list_shows_each_entry_pages_and_searches(web, account):
    suppression_add(account=account, address="first@example.org", reason="bounced",
                    source="sendgrid 'main'")  # fmt: skip
    for number in range(24):
        suppression_add(account=account, address=f"user{number:02d}@shop.example")
    soon = timezone.now() + timedelta(days=3)
    suppression_add(account=account, address="lapsed@example.org", expires_at=soon)
    Suppression.objects.filter(address="lapsed@example.org").update(
        expires_at=timezone.now() - timedelta(days=1)
    )
    first = web("get", URL)
    listed = rows(first)
    assert len(listed) == 20 and listed[:2] == ["lapsed@example.org", "user23@shop.example"]
    page = first.content.decode()
    assert "26 addresses, newest first." in page and "Page 1 of 2" in page
    assert "expired</span>" in page
    second = web("get", URL, {"page": "2"})
    assert rows(second)[-1] == "first@example.org" and "Page 2 of 2" in second.content.decode()
    row = second.content.decode().split("first@example.org</th>")[1].split("</tr>")[0]
    assert "Hard bounce" in row and "sendgrid &#x27;main&#x27;" in row and "never" in row
    assert rows(web("get", URL, {"page": "99"})) == rows(second)  # past the end: the last page
    found = web("get", URL, {"search": " EXAMPLE.ORG "})
    assert rows(found) == ["lapsed@example.org", "first@example.org"]
    assert "2 addresses match, newest first." in found.content.decode()
    assert rows(web("get", URL, {"reason": "bounced"})) == ["first@example.org"]
    assert rows(web("get", URL, {"search": "nobody"})) == []
    paged = web("get", URL, {"search": "shop"}).content.decode()
    assert 'href="?search=shop&amp;page=2"' in paged


def test_add_an_address_with_a_reason_and_an_expiry(web, account):
    response = web("post", URL, {"address": "Ann <ANN@example.org>", "reason": "complained",
                                 "expires_at": "2999-05-01T10:30"})  # fmt: skip
    assert response.status_code == 302 and response["Location"] == URL
    entry = Suppression.objects.get(account=account)
    assert (entry.address, entry.reason, entry.source) == ("ann@example.org", "complained", "web")
    assert entry.expires_at.isoformat() == "2999-05-01T10:30:00+00:00"
    page = web("get", URL).content.decode()
    assert (
        "Added ann@example.org" in page and "Spam complaint" in page and "2999-05-01 10:30" in page
    )
    again = web("post", URL, {"address": "ann@example.org", "reason": "manual"})
    assert again.status_code == 302 and "already on the list" in web("get", URL).content.decode()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"address": "", "reason": "manual"}, "address", "required"),
        ({"address": "not an address", "reason": "manual"}, "address", "not a valid"),
        ({"address": "a@example.org", "reason": "spite"}, "reason", "valid choice"),
        ({"address": "a@example.org", "reason": "manual", "expires_at": "2001-01-01T00:00"},
         "expires_at", "in the future"),
    ],
)  # fmt: skip
def test_a_bad_add_shows_the_error_beside_the_field(web, data, field, message):
    response = web("post", URL, data)
    assert response.status_code == 200
    assert message in error_of(response, field)
    assert not Suppression.objects.exists()


def test_remove_takes_it_off_and_returns_to_the_same_search(web, account):
    suppression_add(account=account, address="ann@example.org")
    suppression_add(account=account, address="bo@example.org")
    page = web("get", URL, {"search": "example"}).content.decode()
    assert '<input type="hidden" name="search" value="example">' in page
    response = web("post", f"{URL}remove/", {"address": "ann@example.org", "search": "example"})
    assert response.status_code == 302 and response["Location"] == f"{URL}?search=example"
    assert list(Suppression.objects.values_list("address", flat=True)) == ["bo@example.org"]
    assert "Removed ann@example.org" in web("get", URL).content.decode()
    gone = web("post", f"{URL}remove/", {"address": "ann@example.org"})
    assert gone["Location"] == URL and "was not on the list" in web("get", URL).content.decode()
    assert web("get", f"{URL}remove/").status_code == 405  # a POST only


def test_import_a_file_then_export_it(web, client, account):
    suppression_add(account=account, address="known@example.org")
    response = web(
        "post", f"{URL}import/", {"file": csv_file("ann@example.org\nknown@example.org\n")}
    )
    assert response.status_code == 302
    assert "Imported 2 addresses: 1 new on the list." in web("get", URL).content.decode()
    export = client.get(f"{URL}export/")
    assert export.status_code == 200 and export["Content-Type"] == "text/csv; charset=utf-8"
    assert export["Content-Disposition"] == 'attachment; filename="suppressions.csv"'
    lines = b"".join(export.streaming_content).decode().splitlines()
    assert lines[0] == "address,reason,source,created_at,expires_at"
    assert [line.split(",")[:3] for line in lines[1:]] == [
        ["ann@example.org", "manual", "import"], ["known@example.org", "manual", ""],
    ]  # fmt: skip


def test_an_import_with_a_bad_line_changes_nothing(web, account):
    response = web("post", f"{URL}import/", {"file": csv_file("ann@example.org\nnope\n")})
    assert response.status_code == 200
    assert "Line 2: 'nope' is not a valid" in error_of(response, "file")
    assert "The file was not imported." in response.content.decode()
    assert not Suppression.objects.exists()
    too_big = csv_file(b"a@example.org\n" * (MAX_IMPORT_BYTES // 14 + 1))
    refused = web("post", f"{URL}import/", {"file": too_big})
    assert "at most 5.0" in error_of(refused, "file") and not Suppression.objects.exists()
    missing = web("post", f"{URL}import/", {})
    assert "required" in error_of(missing, "file")


def test_another_accounts_list_is_invisible_and_untouchable(web, client, other_account):
    suppression_add(account=other_account, address="theirs@example.org")
    assert "theirs@example.org" not in web("get", URL).content.decode()
    assert "theirs" not in b"".join(client.get(f"{URL}export/").streaming_content).decode()
    web("post", f"{URL}remove/", {"address": "theirs@example.org"})
    assert Suppression.objects.filter(account=other_account).count() == 1


def test_a_search_with_a_nul_character_is_not_a_server_error(client, account):
    client.force_login(account)
    assert client.get("/suppressions/", {"search": "a\x00b"}).status_code in (200, 400)
