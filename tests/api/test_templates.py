"""/api/v1/templates through the test client with real tokens: create, read, list, replace,
change, delete, render without sending, the problem answers (422 naming fields and variables,
404, 409), sandbox escapes and expensive templates refused, and one account's templates apart
from another's."""

from __future__ import annotations

import pytest

from harness.api import ApiClient
from harness.factories import make_token
from mailer.models import Email, EmailTemplate

pytestmark = pytest.mark.django_db

URL = "/api/v1/templates"
WELCOME = {
    "name": "welcome",
    "subject": "Welcome, {{ first_name }}!",
    "text": "Hello {{ first_name }},\n{{ note }}",
    "html": "<p>Hello {{ first_name }},</p><p>{{ note }}</p>",
}


@pytest.fixture
def other_api(client, other_account) -> ApiClient:
    return ApiClient.django(client, make_token(other_account))


def problem(response, status: int) -> dict[str, list[str]]:
    """The problem's field errors as {field: [messages]}, after checking its status and type."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json", response.content
    errors: dict[str, list[str]] = {}
    for error in response.json().get("errors", []):
        errors.setdefault(error["field"], []).append(error["message"])
    return errors


def create(api, **fields):
    response = api.post(URL, {**WELCOME, **fields})
    assert response.status_code == 201, response.content
    return response.json()


# CRUD -----------------------------------------------------------------------------------------


def test_create_read_list_replace_change_and_delete(api):
    created = api.post(URL, WELCOME)
    assert created.status_code == 201, created.content
    body = created.json()
    assert created["Location"].endswith("/api/v1/templates/welcome")
    assert {k: body[k] for k in WELCOME} == WELCOME
    assert body["variables"] == ["first_name", "note"]
    assert api.get(f"{URL}/welcome").json() == body
    create(api, name="order-shipped.v2", subject="Shipped", text="On its way.", html="")
    listed = api.get(URL).json()
    assert listed["count"] == 2
    assert [t["name"] for t in listed["results"]] == ["order-shipped.v2", "welcome"]
    assert "text" not in listed["results"][0]  # summaries: no bodies
    assert [t["name"] for t in api.get(URL, {"search": "SHIP"}).json()["results"]] == [
        "order-shipped.v2"
    ]
    replaced = api.put(f"{URL}/welcome", {"subject": "Hi {{ first_name }}", "text": "Hi."})
    assert replaced.status_code == 200, replaced.content
    assert (replaced.json()["html"], replaced.json()["variables"]) == ("", ["first_name"])
    renamed = api.patch(f"{URL}/welcome", {"name": "welcome-2", "html": "<b>{{ x }}</b>"})
    assert renamed.status_code == 200, renamed.content
    assert renamed.json()["name"] == "welcome-2" and renamed.json()["text"] == "Hi."
    problem(api.get(f"{URL}/welcome"), 404)
    assert api.delete(f"{URL}/welcome-2").status_code == 204
    problem(api.delete(f"{URL}/welcome-2"), 404)
    assert list(EmailTemplate.objects.values_list("name", flat=True)) == ["order-shipped.v2"]


def test_bad_fields_are_422s_naming_them_and_nothing_is_stored(api):
    errors = problem(api.post(URL, {**WELCOME, "name": "Has Spaces", "subject": ""}), 422)
    assert set(errors) == {"name", "subject"}
    assert "lower-case letters" in errors["name"][0]
    errors = problem(api.post(URL, {**WELCOME, "text": "", "html": ""}), 422)
    assert errors == {"text": ["Give a text or an HTML part (or both)."]}
    errors = problem(api.post(URL, {**WELCOME, "html": "<p>\n{% for x in items %}\n{{ x }"}), 422)
    assert errors["html"][0].startswith("line 3: ")
    errors = problem(api.post(URL, {**WELCOME, "subject": "Hi\n{{ name }}"}), 422)
    assert "one line" in errors["subject"][0]
    errors = problem(api.post(URL, {**WELCOME, "html": "{% include 'other' %}"}), 422)
    assert errors == {"html": ["line 1: include can't be used in an email template."]}
    errors = problem(api.post(URL, {**WELCOME, "surprise": 1}), 422)
    assert "surprise" in errors
    errors = problem(api.post(URL, {**WELCOME, "text": "x" * 100_001}), 422)
    assert "text" in errors
    assert not EmailTemplate.objects.exists()


def test_a_name_taken_is_a_409_on_create_and_on_rename(api):
    create(api)
    create(api, name="other")
    assert "name" in problem(api.post(URL, WELCOME), 409)
    assert "name" in problem(api.patch(f"{URL}/other", {"name": "welcome"}), 409)
    assert api.get(f"{URL}/other").json()["name"] == "other"


def test_another_accounts_template_is_not_found_anywhere(api, other_api):
    create(api)
    for response in (
        other_api.get(f"{URL}/welcome"),
        other_api.put(f"{URL}/welcome", {"subject": "mine now", "text": "x"}),
        other_api.patch(f"{URL}/welcome", {"subject": "mine now"}),
        other_api.delete(f"{URL}/welcome"),
        other_api.post(f"{URL}/welcome/render", {"variables": WELCOME}),
    ):
        problem(response, 404)
    assert other_api.get(URL).json()["count"] == 0
    # The same name is free in the other account.
    assert other_api.post(URL, WELCOME).status_code == 201
    assert EmailTemplate.objects.get(account__username="alice").subject == WELCOME["subject"]


# Rendering ------------------------------------------------------------------------------------


def render(api, variables, name: str = "welcome"):
    return api.post(f"{URL}/{name}/render", {"variables": variables})


def test_render_escapes_variables_in_html_only_and_sends_nothing(api):
    create(api)
    answer = render(api, {"first_name": "Ann", "note": "<script>alert(1)</script> & co"})
    assert answer.status_code == 200, answer.content
    assert answer.json() == {
        "subject": "Welcome, Ann!",
        "text": "Hello Ann,\n<script>alert(1)</script> & co",
        "html": "<p>Hello Ann,</p><p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p>",
    }
    assert not Email.objects.exists()


def test_a_missing_variable_is_a_422_naming_it(api):
    create(api, html="<p>{{ user.first_name }} {{ note }}</p>", text="", subject="Hi")
    errors = problem(render(api, {"user": {"last_name": "Lee"}, "note": ""}), 422)
    assert errors == {"variables.user.first_name": ["missing: the template uses it"]}
    response = render(api, {"user": {"first_name": "Ann"}})
    assert problem(response, 422) == {"variables.note": ["missing: the template uses it"]}
    assert "note" in response.json()["detail"] and "html, line 1" in response.json()["detail"]


def test_bad_variables_are_a_422(api):
    create(api)
    assert "variables" in problem(render(api, {"first_name": "x" * 70_000, "note": ""}), 422)
    response = api.post(f"{URL}/welcome/render", {"variables": ["not", "an", "object"]})
    assert "variables" in problem(response, 422)


@pytest.mark.parametrize(
    "html",
    ["{{ ''.__class__.__mro__ }}", "{{ cycler.__init__.__globals__ }}", "{{ x['_secret'] }}"],
)
def test_a_sandbox_escape_written_out_is_refused_when_saved(api, html):
    errors = problem(api.post(URL, {**WELCOME, "html": html}), 422)
    assert "names starting with '_' are private" in errors["html"][0]


def test_a_sandbox_escape_reached_at_render_time_is_a_422_not_a_500(api):
    create(api, html="{{ x|attr(name) }}{{ text.format(1) }}", text="", subject="Hi")
    response = render(api, {"x": "", "name": "__class__", "text": "{}"})
    errors = problem(response, 422)
    assert "'__class__'" in errors["html"][0] and "not allowed" in errors["html"][0]
    response = render(api, {"x": "", "name": "upper", "text": "{:>999999999}"})
    assert "'format'" in problem(response, 422)["html"][0]


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("{% for i in range(10**9) %}x{% endfor %}", "range() may give at most 1000"),
        (
            "{% for i in range(1000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}",
            "more than 10000 loop iterations",
        ),
        ("{{ 'x' * 10**9 }}", "characters produced"),
        ("{{ 9**9**9 }}", "an integer of more than 256 bits"),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(100) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            "characters produced",
        ),
    ],
)
def test_an_expensive_template_is_refused_quickly(api, html, expected):
    create(api, html=html, text="", subject="Hi")
    errors = problem(render(api, {}), 422)
    assert expected in errors["html"][0], errors


def test_the_openapi_schema_documents_the_templates_endpoints(api):
    paths = api.get("/api/v1/openapi.json").json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/templates"])
    assert {"get", "put", "patch", "delete"} <= set(paths["/api/v1/templates/{name}"])
    assert "post" in paths["/api/v1/templates/{name}/render"]
