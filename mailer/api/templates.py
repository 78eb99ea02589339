"""/api/v1/templates: the account's stored email templates (Jinja2, rendered in a bounded
sandbox), addressed by name: list, create, read, replace, change, delete, and render one with
variables without sending it."""

from dataclasses import asdict

from django.http import HttpResponse
from ninja import Query, Router, Status

from mailer.selectors.templates import template_detail, template_get, template_list
from mailer.services.templates import (
    template_create,
    template_delete,
    template_render,
    template_update,
)

from .paging import page_answer
from .schemas import Problem
from .template_schemas import (
    RenderIn,
    RenderOut,
    TemplateFilters,
    TemplateIn,
    TemplateOut,
    TemplatePage,
    TemplatePatch,
    TemplatePut,
)

router = Router(tags=["templates"])

ERRORS = {400: Problem, 401: Problem, 404: Problem, 409: Problem, 413: Problem, 415: Problem,
          422: Problem, 429: Problem}  # fmt: skip


@router.get("/templates", response={200: TemplatePage, **ERRORS}, summary="List templates")
def list_templates(request, filters: Query[TemplateFilters]):
    """The account's templates by name, `page_size` (at most 100) a page, without their
    parts; `search` keeps names containing it."""
    page = template_list(account=request.account, **filters.model_dump())
    return page_answer(request, page)


@router.post("/templates", response={201: TemplateOut, **ERRORS}, summary="Add a template")
def create_template(request, response: HttpResponse, payload: TemplateIn):
    """Save a template. Each part is compiled now: a syntax error is a 422 naming the part and
    its line, as is anything the sandbox refuses (`{{ ''.__class__ }}`, macros, includes).
    409 when the account has a template of this name."""
    template = template_create(account=request.account, **payload.model_dump())
    response["Location"] = request.build_absolute_uri(f"{request.path.rstrip('/')}/{template.name}")
    return Status(201, template_detail(template))


@router.get("/templates/{name}", response={200: TemplateOut, **ERRORS}, summary="One template")
def get_template(request, name: str):
    return template_detail(template_get(account=request.account, name=name))


@router.put(
    "/templates/{name}", response={200: TemplateOut, **ERRORS}, summary="Replace a template"
)
def replace_template(request, name: str, payload: TemplatePut):
    """Replace every part (an absent text or html becomes empty); `name` renames it."""
    template = template_get(account=request.account, name=name)
    return template_detail(template_update(template=template, **payload.model_dump()))


@router.patch(
    "/templates/{name}", response={200: TemplateOut, **ERRORS}, summary="Change a template"
)
def update_template(request, name: str, payload: TemplatePatch):
    """Change the fields given; `name` renames it (409 if the account has one of that name)."""
    changes = {k: v for k, v in payload.model_dump(exclude_unset=True).items() if v is not None}
    template = template_get(account=request.account, name=name)
    return template_detail(template_update(template=template, **changes))


@router.delete("/templates/{name}", response={204: None, **ERRORS}, summary="Delete a template")
def delete_template(request, name: str):
    template_delete(template=template_get(account=request.account, name=name))
    return Status(204, None)


@router.post(
    "/templates/{name}/render", response={200: RenderOut, **ERRORS}, summary="Render a template"
)
def render_template(request, name: str, payload: RenderIn):
    """The template rendered with `variables`, as a send would use it; nothing is sent. A
    variable it uses and `variables` lacks is a 422 naming it (`variables.first_name`); what
    the sandbox refuses, or a render past its bounds (loops, size), is a 422 naming the part."""
    template = template_get(account=request.account, name=name)
    rendered = template_render(
        account=request.account, name=template.name, variables=payload.variables
    )
    return asdict(rendered)
