"""/api/v1/suppressions through the test client with real tokens: list, search and paging,
add, remove, CSV import and export, one account's list apart from another's, and a send to an
address added here refused end to end."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from harness.api import ApiClient
from harness.factories import loopback_smtp, make_token
from mailer.models import Email, Suppression
from mailer.services.suppressions import MAX_IMPORT_BYTES, suppression_add

pytestmark = pytest.mark.django_db

URL = "/api/v1/suppressions"


@pytest.fixture
def other_api(client, other_account) -> ApiClient:
    return ApiClient.django(client, make_token(other_account))


def fields(response) -> set[str]:
    assert response["Content-Type"] == "application/problem+json", response.content
    return {error["field"] for error in response.json()["errors"]}


def addresses(api, **params) -> list[str]:
    response = api.get(URL, {"page_size": 100, **params})
    assert response.status_code == 200, response.content
    return [entry["address"] for entry in response.json()["results"]]


def import_csv(api, text: str | bytes, content_type: str = "text/csv"):
    return api.post(f"{URL}/import", text, headers={"Content-Type": content_type})


def export(client, api) -> str:
    """The export's CSV (a streamed answer: read through the test client, not ApiClient)."""
    response = client.get(f"{URL}/export", headers={"Authorization": f"Bearer {api.token}"})
    assert response.status_code == 200
    assert response.streaming and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="suppressions.csv"'
    return b"".join(response.streaming_content).decode()


# Add and remove -----------------------------------------------------------------------------


def test_add_is_201_then_200_with_the_entry_kept_lower_cased(api):
    created = api.post(URL, {"address": "Ann Smith <Ann@Example.ORG>"})
    assert created.status_code == 201, created.content
    entry = created.json()
    assert created["Location"].endswith(f"{URL}/ann@example.org")
    assert entry["address"] == "ann@example.org" and entry["reason"] == "manual"
    assert entry["source"] == "api" and entry["expires_at"] is None and entry["active"] is True
    again = api.post(URL, {"address": "ann@example.org", "reason": "complained"})
    assert again.status_code == 200 and again.json() == entry  # kept as it was
    assert Suppression.objects.count() == 1


def test_add_with_a_reason_and_a_future_expiry(api):
    when = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    created = api.post(
        URL, {"address": "bo@example.org", "reason": "bounced", "expires_at": when.isoformat()}
    )
    assert created.status_code == 201, created.content
    assert created.json()["reason"] == "bounced" and created.json()["active"] is True
    assert Suppression.objects.get().expires_at == when
    naive = api.post(URL, {"address": "cy@example.org", "expires_at": "2999-01-01T00:00:00"})
    assert naive.json()["expires_at"] == "2999-01-01T00:00:00Z"  # no offset: UTC


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"address": "not an address"}, "address"),
        ({"address": "ann@example.org, bo@example.org"}, "address"),
        ({"address": "ann@example.org\r\nBcc: x@example.org"}, "address"),
        ({"address": ""}, "address"),
        ({}, "address"),
        ({"address": "ann@example.org", "reason": "spite"}, "reason"),
        ({"address": "ann@example.org", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"address": "ann@example.org", "expires_at": "next week"}, "expires_at"),
        ({"address": "ann@example.org", "note": "x"}, "note"),
    ],
)
def test_bad_input_is_422_naming_the_field(api, body, field):
    response = api.post(URL, body)
    assert response.status_code == 422, response.content
    assert field in fields(response)
    assert not Suppression.objects.exists()


def test_remove_is_204_then_404_with_the_address_url_encoded(api):
    address = "o'brien/sales+tag@example.org"
    assert api.post(URL, {"address": address}).status_code == 201
    path = f"{URL}/{quote(address.upper(), safe='')}"
    removed = api.delete(path)
    assert removed.status_code == 204 and removed.content == b""
    assert not Suppression.objects.exists()
    missing = api.delete(path)
    assert missing.status_code == 404 and missing["Content-Type"] == "application/problem+json"


def test_an_expired_entry_is_listed_inactive_and_adding_it_again_renews_it(api, account):
    past = timezone.now() - timedelta(days=1)
    suppression_add(account=account, address="old@example.org", expires_at=past)
    [entry] = api.get(URL).json()["results"]
    assert entry["active"] is False and entry["source"] == ""
    renewed = api.post(URL, {"address": "old@example.org"})
    assert renewed.status_code == 200 and renewed.json()["expires_at"] is None
    assert renewed.json()["active"] is True


# List: paging, search, filters ---------------------------------------------------------------


def test_list_pages_newest_first(api, account):
    for number in range(25):
        suppression_add(account=account, address=f"user{number:02d}@example.org")
    first = api.get(URL).json()
    assert (first["count"], first["page"], first["page_size"]) == (25, 1, 10)
    assert [e["address"] for e in first["results"]] == [
        f"user{n:02d}@example.org" for n in range(24, 14, -1)
    ]
    assert first["previous"] is None and first["next"].endswith(f"{URL}?page=2")
    last = api.get(URL, {"page": 3, "page_size": 10}).json()
    assert len(last["results"]) == 5 and last["next"] is None
    assert last["previous"].endswith(f"{URL}?page=2&page_size=10")
    assert api.get(URL, {"page": 4}).json()["results"] == []
    assert len(api.get(URL, {"page_size": 100}).json()["results"]) == 25


@pytest.mark.parametrize(
    "query", [{"page_size": 101}, {"page": 0}, {"page_size": "x"}, {"reason": "spite"},
              {"search": "x" * 321}],
)  # fmt: skip
def test_bad_list_queries_are_422(api, query):
    response = api.get(URL, query)
    assert response.status_code == 422 and set(query) <= fields(response)


def test_search_is_a_case_insensitive_part_of_the_address_and_reason_filters(api, account):
    suppression_add(account=account, address="ann@shop.example", reason="bounced")
    suppression_add(account=account, address="bo@Example.org", reason="complained")
    suppression_add(account=account, address="cy@example.org")
    assert addresses(api, search="EXAMPLE.ORG") == ["cy@example.org", "bo@example.org"]
    assert addresses(api, search=" Shop ") == ["ann@shop.example"]
    assert addresses(api, search="100%_") == []  # no wildcards
    assert addresses(api, reason="complained") == ["bo@example.org"]
    assert addresses(api, search="example.org", reason="manual") == ["cy@example.org"]
    searched = api.get(URL, {"search": "example", "page_size": 1}).json()
    assert searched["count"] == 3 and "search=example" in searched["next"]


# Accounts ------------------------------------------------------------------------------------


def test_another_accounts_list_is_invisible_and_untouchable(client, api, other_api, account):
    suppression_add(account=account, address="mine@example.org")
    assert other_api.post(URL, {"address": "theirs@example.org"}).status_code == 201
    assert other_api.post(URL, {"address": "mine@example.org"}).status_code == 201  # their own
    assert addresses(api) == ["mine@example.org"]
    assert addresses(api, search="theirs") == []
    assert api.delete(f"{URL}/theirs%40example.org").status_code == 404
    assert api.delete(f"{URL}/mine%40example.org").status_code == 204
    assert sorted(addresses(other_api)) == ["mine@example.org", "theirs@example.org"]
    assert export(client, api).splitlines() == ["address,reason,source,created_at,expires_at"]


# Import and export ---------------------------------------------------------------------------


def test_import_a_csv_body_with_or_without_a_header(api, account):
    soon = timezone.now() + timedelta(hours=1)
    suppression_add(account=account, address="known@example.org", expires_at=soon)
    plain = import_csv(api, "ann@example.org\r\nKnown@Example.org\n\nBo <bo@example.org>\n")
    assert plain.status_code == 200, plain.content
    assert plain.json() == {"rows": 3, "added": 2}
    with_header = "\ufeffReason,Address\ncomplained,cy@example.org\n,di@example.org\n"
    assert import_csv(api, with_header.encode()).json() == {"rows": 2, "added": 2}
    entries = {e.address: (e.reason, e.source) for e in Suppression.objects.all()}
    assert entries == {
        "known@example.org": ("manual", ""),
        "ann@example.org": ("manual", "import"),
        "bo@example.org": ("manual", "import"),
        "cy@example.org": ("complained", "import"),
        "di@example.org": ("manual", "import"),
    }
    # Imported again without an expiry, an entry that would lapse stays for good.
    assert Suppression.objects.get(address="known@example.org").expires_at is None


def test_import_reads_any_line_end_and_refuses_what_csv_cannot_read(api, account):
    """Found by the fuzz: a lone carriage return inside a line was a 500 (csv.Error)."""
    mixed = import_csv(api, "ann@example.org\rbo@example.org\r\ncy@example.org")
    assert mixed.status_code == 200, mixed.content
    assert mixed.json() == {"rows": 3, "added": 3}
    huge = import_csv(api, '"' + "x" * 200_000 + '"\n')  # past csv's field size limit
    assert huge.status_code == 422 and "not CSV" in huge.json()["detail"]
    assert Suppression.objects.count() == 3


def test_a_large_import_takes_a_few_queries_not_one_per_row(
    api, account, django_assert_max_num_queries
):
    suppression_add(account=account, address="user0007@example.org")
    text = "".join(f"user{n:04d}@example.org\n" for n in range(1500))
    with django_assert_max_num_queries(20):
        assert import_csv(api, text).json() == {"rows": 1500, "added": 1499}
    assert Suppression.objects.filter(account=account).count() == 1500


def test_import_a_multipart_file(client, api):
    upload = SimpleUploadedFile("list.csv", b"ann@example.org\nbo@example.org\n", "text/csv")
    auth = {"Authorization": f"Bearer {api.token}"}
    response = client.post(f"{URL}/import", {"file": upload}, headers=auth)
    assert response.status_code == 200, response.content
    assert response.json() == {"rows": 2, "added": 2}
    missing = client.post(f"{URL}/import", {"other": "x"}, headers=auth)
    assert missing.status_code == 422 and fields(missing) == {"file"}


def test_import_with_a_bad_line_changes_nothing_and_names_the_lines(api, account):
    suppression_add(account=account, address="known@example.org")
    text = "address,reason,expires_at\nann@example.org,,\nnot-an-address,,\nbo@example.org,spite,\n"
    text += "cy@example.org,,someday\ndi@example.org,,\n"
    response = import_csv(api, text)
    assert response.status_code == 422, response.content
    messages = [error["message"] for error in response.json()["errors"]]
    assert [m.split(":")[0] for m in messages] == ["line 3", "line 4", "line 5"]
    assert "Nothing was imported" in response.json()["detail"]
    assert list(Suppression.objects.values_list("address", flat=True)) == ["known@example.org"]
    only_header = import_csv(api, "address\nann@example.org\nnope\n")
    assert only_header.json()["errors"][0]["message"].startswith("line 3: ")
    not_utf8 = import_csv(api, "ann@example.org\n".encode("utf-16"))
    assert not_utf8.status_code == 422 and "UTF-8" in not_utf8.json()["errors"][0]["message"]
    assert Suppression.objects.count() == 1


def test_import_over_5_mb_is_413_and_other_bodies_415(client, api):
    big = ("a" * 60 + "@example.org\n") * (MAX_IMPORT_BYTES // 73 + 1)
    assert len(big) > MAX_IMPORT_BYTES
    response = import_csv(api, big)
    assert response.status_code == 413 and fields(response) == {"file"}
    assert str(MAX_IMPORT_BYTES) in response.json()["detail"]
    # Refused from Content-Length, before the body is read: here it is far shorter than said.
    claimed = client.post(
        f"{URL}/import", "ann@example.org", content_type="text/csv",
        headers={"Authorization": f"Bearer {api.token}"}, CONTENT_LENGTH=str(MAX_IMPORT_BYTES + 1),
    )  # fmt: skip
    assert claimed.status_code == 413 and claimed["Connection"] == "close"
    upload = SimpleUploadedFile("big.csv", big.encode(), "text/csv")
    too_big_file = client.post(
        f"{URL}/import", {"file": upload}, headers={"Authorization": f"Bearer {api.token}"}
    )
    assert too_big_file.status_code == 413
    assert not Suppression.objects.exists()
    json_body = api.post(f"{URL}/import", {"address": "ann@example.org"})
    assert json_body.status_code == 415 and "text/csv" in json_body.json()["detail"]


def entries(owner) -> list[tuple]:
    found = Suppression.objects.filter(account=owner).order_by("address")
    return [(e.address, e.reason, e.expires_at) for e in found]


def test_export_round_trips_through_import(client, api, other_api, account, other_account):
    later = timezone.now() + timedelta(days=7)
    suppression_add(account=account, address="ann@example.org", reason="bounced", source="ses")
    suppression_add(account=account, address="bo@example.org", expires_at=later)
    suppression_add(account=account, address='"o,dd"@example.org', reason="unsubscribed")
    text = export(client, api)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["address"] for r in rows] == ['"o,dd"@example.org', "ann@example.org",
                                            "bo@example.org"]  # fmt: skip
    assert rows[1]["source"] == "ses" and rows[2]["expires_at"] == later.isoformat()

    assert import_csv(other_api, text).json() == {"rows": 3, "added": 3}
    assert entries(other_account) == entries(account)
    assert import_csv(api, text).json() == {"rows": 3, "added": 0}  # all there already
    assert entries(account)[1:] == [
        ("ann@example.org", "bounced", None), ("bo@example.org", "manual", later),
    ]  # fmt: skip


# End to end ----------------------------------------------------------------------------------


def test_a_send_to_an_address_added_here_is_refused(api, add_provider, smtp_sink):
    add_provider("smtp", name="sink", settings=loopback_smtp(smtp_sink.port))
    assert api.post(URL, {"address": "Ann@Example.org"}).status_code == 201
    email = {"from": "shop@example.com", "to": "ann@example.org", "subject": "Hi", "text": "x"}
    refused = api.post("/api/v1/emails", email)
    assert refused.status_code == 422, refused.content
    problem = refused.json()
    assert problem["suppressed"] == ["ann@example.org"] and "suppression list" in problem["detail"]
    stored = Email.objects.get(pk=problem["email_id"])
    assert stored.status == "failed" and not stored.attempts.exists()
    assert smtp_sink.received == []
    assert api.delete(f"{URL}/ann%40example.org").status_code == 204
    assert api.post("/api/v1/emails", email).status_code == 201
    assert len(smtp_sink.received) == 1


def test_openapi_documents_the_csv_bodies_once(client):
    def unique(pairs):
        keys = [key for key, _ in pairs]
        assert len(keys) == len(set(keys)), keys  # Swagger UI refuses a duplicated key
        return dict(pairs)

    schema = json.loads(client.get("/api/v1/openapi.json").content, object_pairs_hook=unique)
    paths = schema["paths"]
    body = paths[f"{URL}/import"]["post"]["requestBody"]["content"]
    assert set(body) == {"text/csv", "multipart/form-data"}
    assert "text/csv" in paths[f"{URL}/export"]["get"]["responses"]["200"]["content"]
    assert set(paths[f"{URL}/{{address}}"]) == {"delete"}


def test_control_characters_in_a_search_or_an_address_are_a_4xx_on_any_database(api):
    """PostgreSQL refuses a NUL anywhere in a query: found by fuzzing the live API there."""
    answer = api.get("/api/v1/suppressions", {"search": "a\x00b"})
    assert answer.status_code == 422 and "search" in answer.content.decode()
    assert api.delete("/api/v1/suppressions/a%00b%40example.org").status_code == 404
