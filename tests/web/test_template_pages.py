"""The templates pages through the Django test client: list and search, add and edit with the
server-rendered preview, errors beside their fields, delete, the live preview's endpoint (its
answers, its CSRF check), and one account's templates apart from another's."""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client

from mailer.models import EmailTemplate
from mailer.services.templates import template_create
from tests.web.test_provider_pages import error_of, web_fixture  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

URL = "/templates/"
FORM = {
    "name": "welcome",
    "subject": "Welcome, {{ first_name }}!",
    "text": "Hello {{ first_name }}",
    "html": "<p>Hello {{ first_name }}</p>",
    "variables": '{"first_name": "<Ann>"}',
}


def preview_of(response) -> dict[str, str]:
    page = response.content.decode()
    found = {
        "subject": re.search(r"data-preview-subject>(.*?)</dd>", page, re.S),
        "text": re.search(r"data-preview-text>(.*?)</pre>", page, re.S),
        "html": re.search(r'srcdoc="(.*?)" data-preview-html', page, re.S),
    }
    return {part: html.unescape(match.group(1)) for part, match in found.items()}


@pytest.mark.parametrize("path", [URL, f"{URL}new/", f"{URL}welcome/edit/"])
def test_pages_need_a_signed_in_person(client, path):
    response = client.get(path)
    assert response.status_code == 302 and "login" in response["Location"]


def test_the_page_follows_the_content_security_policy_and_is_in_the_nav(web, account):
    template_create(account=account, name="welcome", subject="Hi", text="x")
    listing = web("get", URL).content.decode()
    assert re.search(r'<a class="nav-link active" aria-current="page" href="/templates/">'
                     r"Templates</a>", listing)  # fmt: skip
    assert 'href="/templates/welcome/edit/"' in listing and "1 template, by name." in listing
    for page in (listing, web("get", f"{URL}new/").content.decode()):
        assert "style=" not in page and "<style" not in page
        assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    form = web("get", f"{URL}welcome/edit/").content.decode()
    assert '<script src="/static/js/template-preview.js" defer></script>' in form
    assert 'sandbox=""' in form and 'data-preview-url="/templates/preview/"' in form
    assert "Templates</a>" in web("get", "/tokens/").content.decode()


def test_add_a_template_then_edit_it_with_its_preview(web, account):
    added = web("post", f"{URL}new/", FORM)
    assert added.status_code == 302 and added["Location"] == "/templates/welcome/edit/"
    stored = EmailTemplate.objects.get(account=account)
    assert (stored.subject, stored.text, stored.html) == (
        FORM["subject"], FORM["text"], FORM["html"]
    )  # fmt: skip
    page = web("get", added["Location"])
    assert "Template welcome saved." in page.content.decode()
    # The sample variables start from what the template uses; the preview is rendered with them.
    assert '"first_name": "first_name"' in html.unescape(page.content.decode())
    assert preview_of(page) == {
        "subject": "Welcome, first_name!",
        "text": "Hello first_name",
        "html": "<p>Hello first_name</p>",
    }
    edited = web("post", added["Location"], {**FORM, "name": "welcome-2", "text": "Bye"})
    assert edited["Location"] == "/templates/welcome-2/edit/"
    stored.refresh_from_db()
    assert (stored.name, stored.text) == ("welcome-2", "Bye")


def test_errors_are_shown_beside_their_fields_and_nothing_is_saved(web, account):
    response = web("post", f"{URL}new/", {**FORM, "name": "Bad Name", "html": "a\n{{ x }"})
    assert response.status_code == 200
    assert "lower-case letters" in error_of(response, "name")
    assert error_of(response, "html") == "Line 2: unexpected '}'"
    assert "The template was not saved." in response.content.decode()
    template_create(account=account, name="taken", subject="S", text="x")
    response = web("post", f"{URL}new/", {**FORM, "name": "taken"})
    assert "already has a template named 'taken'" in error_of(response, "name")
    assert EmailTemplate.objects.count() == 1


def test_delete_removes_it_and_other_accounts_templates_are_not_found(web, account, other_account):
    template_create(account=other_account, name="theirs", subject="S", text="x")
    for path in (f"{URL}theirs/edit/", f"{URL}theirs/delete/"):
        assert web("post", path, FORM).status_code == 404
    assert web("get", f"{URL}theirs/edit/").status_code == 404
    template_create(account=account, name="mine", subject="S", text="x")
    assert web("get", f"{URL}mine/delete/").status_code == 405
    deleted = web("post", f"{URL}mine/delete/")
    assert deleted.status_code == 302 and deleted["Location"] == URL
    assert list(EmailTemplate.objects.values_list("name", flat=True)) == ["theirs"]


def test_the_preview_endpoint_renders_the_form_as_a_send_would(web):
    answer = web("post", f"{URL}preview/", FORM).json()
    assert answer == {
        "ok": True,
        "subject": "Welcome, <Ann>!",
        "text": "Hello <Ann>",
        "html": "<p>Hello &lt;Ann&gt;</p>",
    }
    missing = web("post", f"{URL}preview/", {**FORM, "variables": "{}"}).json()
    assert missing["ok"] is False
    assert missing["errors"] == {"variables.first_name": ["missing: the template uses it"]}
    unsafe = web("post", f"{URL}preview/", {**FORM, "html": "{{ ''.__class__.__mro__ }}"}).json()
    assert "names starting with '_' are private" in unsafe["errors"]["html"][0]
    bad_json = web("post", f"{URL}preview/", {**FORM, "variables": "{first_name: 1"}).json()
    assert list(bad_json["errors"]) == ["variables"]
    for hostile in ("[" * 60_000, "[1, 2]", "x" * 70_000):  # deep, not an object, too large
        refused = web("post", f"{URL}preview/", {**FORM, "variables": hostile})
        assert refused.status_code == 200 and list(refused.json()["errors"]) == ["variables"]
    assert web("get", f"{URL}preview/").status_code == 405


def test_the_preview_endpoint_needs_a_session_and_the_csrf_token(account):
    assert Client().post(f"{URL}preview/", FORM).status_code == 302  # to the login page
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(account)
    assert browser.post(f"{URL}preview/", FORM).status_code == 403
    page = browser.get(f"{URL}new/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    answer = browser.post(f"{URL}preview/", {**FORM, "csrfmiddlewaretoken": token})
    assert answer.status_code == 200 and answer.json()["ok"] is True
