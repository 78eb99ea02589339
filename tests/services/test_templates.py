"""Stored templates below the edges: the bounded sandbox (escaping, strict variables, what it
refuses and the bounds of one render) and the services (checks when saved, scoping, renames)."""

from __future__ import annotations

import time

import pytest

from mailer.errors import InvalidInput, MessageTooLarge, NameTaken
from mailer.models import EmailTemplate
from mailer.services import templates as template_services
from mailer.services.templates import (
    TemplateLimitReached,
    TemplateNotFound,
    template_create,
    template_render,
    template_update,
)
from mailer.templating import (
    Rendered,
    TemplateInvalid,
    TemplateRenderFailed,
    TemplateTooExpensive,
    TemplateUnsafe,
    TemplateVariableMissing,
    render,
    source_problems,
)


def html_of(source: str, **variables) -> str:
    return render(subject="s", text="", html=source, variables=variables).html


def text_of(source: str, **variables) -> str:
    return render(subject="s", text=source, html="", variables=variables).text


# The sandbox ----------------------------------------------------------------------------------


def test_html_escapes_variables_and_text_and_subject_do_not():
    out = render(
        subject="Re: {{ x }}", text="{{ x }}", html="<p>{{ x }}</p>", variables={"x": "<b>&"}
    )
    assert out == Rendered(subject="Re: <b>&", text="<b>&", html="<p>&lt;b&gt;&amp;</p>")
    assert html_of("{{ x|safe }}{{ '<i>'|safe ~ x }}", x="<b>") == "<b><i>&lt;b&gt;"


def test_everyday_jinja_works():
    source = (
        "{% for item in items %}{{ loop.index }}. {{ item.name|title }} "
        "{{ '%.2f'|format(item.price) }}{% if not loop.last %}; {% endif %}"
        "{% else %}nothing{% endfor %} | {{ items|map(attribute='price')|sum }}"
        " | {{ missing|default('n/a') }} | {{ name.upper() }} | {{ tags|join(', ') }}"
    )
    items = [{"name": "tea", "price": 3.5}, {"name": "cake", "price": 4}]
    assert text_of(source, items=items, name="ann", tags=["a", "b"]) == (
        "1. Tea 3.50; 2. Cake 4.00 | 7.5 | n/a | ANN | a, b"
    )
    assert text_of(source.split(" | ")[0], items=[]) == "nothing"


def test_a_missing_variable_names_its_path():
    with pytest.raises(TemplateVariableMissing) as missing:
        html_of("<p>\n{{ order.lines[1].sku }}</p>", order={"lines": [{"sku": 1}, {}]})
    assert missing.value.errors == {
        "variables.order.lines[1].sku": ["missing: the template uses it"]
    }
    assert missing.value.message.startswith("html, line 2: ")
    with pytest.raises(TemplateVariableMissing) as missing:
        text_of("{% if vip %}VIP{% endif %}")
    assert missing.value.errors == {"variables.vip": ["missing: the template uses it"]}


@pytest.mark.parametrize(
    "source",
    [
        "{{ x|attr('__class__') }}",
        "{{ x|attr(name) }}",
        "{{ x.format(1) }}",
        "{{ items.append(1) }}",
        "{{ x.ljust(10**6) }}",
    ],
)
def test_the_sandbox_refuses_unsafe_access_at_render_time(source):
    with pytest.raises(TemplateUnsafe) as unsafe:
        html_of(source, x="", name="__class__", items=[])
    assert "not allowed" in unsafe.value.errors["html"][0]


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ ''.__class__.__mro__ }}", "'__mro__' is not allowed"),
        ("{{ cycler.__init__.__globals__ }}", "'__init__' is not allowed"),
        ("{% macro f() %}{% endmacro %}", "macros can't be used"),
        ("{% extends 'base' %}", "extends can't be used"),
        ("{% for x in y recursive %}{{ loop(x) }}{% endfor %}", "recursive loops"),
        ("{{ x|center(10**9) }}", "No filter named 'center'"),
        ("a\n\n{% if %}", "line 3: "),
    ],
)
def test_unsafe_unbounded_or_broken_sources_are_refused_when_saved(source, problem):
    problems = source_problems("html", source)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(100000) %}{% endfor %}",
        "{% for a in range(100) %}{% for b in range(100) %}{% for c in range(100) %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        "{{ ('a' * 1000)|replace('a', 'b' * 100000) }}",
        "{{ range(1000)|join('x' * 100000) }}",
        "{{ '%999999999s'|format(1) }}",
        "{% set a = 'x' * 1000 %}{% set b = a~a~a~a~a~a~a~a~a~a %}{% set c = b~b~b~b~b~b~b~b~b~b %}"
        "{% set d = c~c~c~c~c~c~c~c~c~c %}{% set e = d~d~d~d~d~d~d~d~d~d %}{{ e }}",
        "{{ [1] * 100000 }}",
        "{% for i in range(1000) %}{{ big }}{% endfor %}",
    ],
)
def test_expensive_templates_stop_at_their_bounds_in_little_time(source):
    started = time.monotonic()
    with pytest.raises(TemplateTooExpensive):
        html_of(source, big="x" * 60_000)
    assert time.monotonic() - started < 2


def test_the_rendered_size_is_capped_by_max_message_bytes(settings):
    settings.MAX_MESSAGE_BYTES = 50_000
    with pytest.raises((MessageTooLarge, TemplateTooExpensive)):
        text_of("{% for i in range(10) %}{{ big }}{% endfor %}", big="x" * 6_000)
    assert len(text_of("{{ big }}", big="x" * 40_000)) == 40_000


def test_a_render_error_names_the_part_and_line_and_is_not_a_crash():
    with pytest.raises(TemplateRenderFailed) as failed:
        text_of("ok\n{{ 1 / n }}", n=0)
    assert failed.value.errors == {"text": ["line 2: division by zero"]}
    with pytest.raises(TemplateRenderFailed) as failed:
        render(subject="{{ s }}", text="x", html="", variables={"s": "a\r\nBcc: x@example.org"})
    assert "subject" in failed.value.errors


@pytest.mark.parametrize(
    "variables", [[], {"x": float("nan")}, {"x": {"y": {"z": [[[[[[[[[1]]]]]]]]]}}}]
)
def test_variables_must_be_a_bounded_json_object(variables):
    with pytest.raises(InvalidInput) as bad:
        render(subject="s", text="x", html="", variables=variables)
    assert list(bad.value.errors) == ["variables"]


# The services ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_render_is_scoped_to_the_account(account, other_account):
    template_create(account=account, name="welcome", subject="Hi {{ n }}", text="Hello {{ n }}")
    assert template_render(account=account, name="welcome", variables={"n": "Ann"}) == Rendered(
        subject="Hi Ann", text="Hello Ann", html=""
    )
    for who, name in ((other_account, "welcome"), (account, "nope"), (account, "BAD NAME")):
        with pytest.raises(TemplateNotFound) as not_found:
            template_render(account=who, name=name, variables={})
        assert list(not_found.value.errors) == ["template"]


@pytest.mark.django_db
def test_update_checks_every_field_first_and_saves_nothing_on_a_problem(account):
    template = template_create(account=account, name="a", subject="S", html="<p>x</p>")
    template_create(account=account, name="b", subject="S", text="x")
    with pytest.raises(TemplateInvalid) as invalid:
        template_update(template=template, subject="new", html="{{ x }")
    assert list(invalid.value.errors) == ["html"]
    with pytest.raises(NameTaken):
        template_update(template=template, name="b", subject="renamed?")
    template.refresh_from_db()
    assert (template.name, template.subject, template.html) == ("a", "S", "<p>x</p>")
    with pytest.raises(TemplateInvalid):
        template_update(template=template, html="")  # no text either: no body left


@pytest.mark.django_db
def test_an_account_has_a_bounded_number_of_templates(account, monkeypatch):
    monkeypatch.setattr(template_services, "MAX_TEMPLATES_PER_ACCOUNT", 2)
    for name in ("one", "two"):
        template_create(account=account, name=name, subject="S", text="x")
    with pytest.raises(TemplateLimitReached):
        template_create(account=account, name="three", subject="S", text="x")
    assert EmailTemplate.objects.count() == 2
