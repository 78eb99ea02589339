"""/api/v1/suppressions: the account's suppression list: list and search, add, remove, and CSV
import and export (DESIGN.md, "Suppression")."""

from urllib.parse import quote

from django.http import Http404, HttpResponse, StreamingHttpResponse
from ninja import Query, Router, Status
from ninja.errors import HttpError

from mailer.errors import InvalidInput, MessageTooLarge
from mailer.selectors.suppressions import suppression_detail, suppression_page
from mailer.services.suppressions import (
    MAX_IMPORT_BYTES,
    suppression_add_checked,
    suppression_delete,
    suppressions_export,
    suppressions_import,
)

from .paging import page_answer
from .problems import app_error
from .schemas import Problem
from .suppression_schemas import (
    SuppressionFilters,
    SuppressionImportOut,
    SuppressionIn,
    SuppressionOut,
    SuppressionPage,
)

router = Router(tags=["suppressions"])

ERRORS = {400: Problem, 401: Problem, 404: Problem, 413: Problem, 415: Problem, 422: Problem,
          429: Problem}  # fmt: skip
CSV_TYPES = ("text/csv", "text/plain", "application/csv")
MULTIPART_SLACK = 64 * 1024  # a multipart body's boundaries and part headers around the file
CSV_BODY = {"content": {"text/csv": {"schema": {"type": "string"}}}}
IMPORT_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            **CSV_BODY["content"],
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@router.get(
    "/suppressions",
    response={200: SuppressionPage, **ERRORS},
    summary="List suppressed addresses",
)
def list_suppressions(request, filters: Query[SuppressionFilters]):
    """The account's suppression list, newest first, `page_size` (at most 100) a page;
    `search` keeps addresses containing it (any case), `reason` those of one reason."""
    page = suppression_page(account=request.account, **filters.model_dump())
    return page_answer(request, page)


@router.post(
    "/suppressions",
    response={200: SuppressionOut, 201: SuppressionOut, **ERRORS},
    summary="Suppress an address",
)
def add_suppression(request, response: HttpResponse, payload: SuppressionIn):
    """Put an address on the list: no provider is asked to send to it (until `expires_at`).
    201 when added; 200 with the entry as it stands when it was there already (a later
    `expires_at`, or none, extends an entry that would lapse)."""
    entry, created = suppression_add_checked(
        account=request.account, source="api", **payload.model_dump()
    )
    if not created:
        return Status(200, suppression_detail(entry))
    path = f"{request.path.rstrip('/')}/{quote(entry.address, safe='@')}"
    response["Location"] = request.build_absolute_uri(path)
    return Status(201, suppression_detail(entry))


@router.post(
    "/suppressions/import",
    response={200: SuppressionImportOut, **ERRORS},
    summary="Import addresses from CSV",
    openapi_extra=IMPORT_DOC,
)
def import_suppressions(request):
    """Add the addresses of a CSV file, sent as the body (`Content-Type: text/csv`) or as the
    `file` field of a multipart form; UTF-8, at most 5 MB (413 beyond) and 100,000 rows. The
    CSV has an `address` column (with optional `reason` and `expires_at` columns, as the
    export writes them) or one address per line. All or nothing: a bad line is a 422 naming
    the first bad lines, and nothing is added."""
    try:
        data = _csv_upload(request)
    except MessageTooLarge as exc:
        response = app_error(exc)
        response["Connection"] = "close"  # the body was not read: don't reuse the socket
        return response
    return suppressions_import(account=request.account, text=data)


def _csv_upload(request) -> bytes:
    """The CSV's bytes from the body or the multipart `file` field, refused from the request's
    Content-Length before the body is read when it is over MAX_IMPORT_BYTES."""
    content_type = request.content_type or ""
    multipart = content_type == "multipart/form-data"
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_IMPORT_BYTES + (MULTIPART_SLACK if multipart else 0):
        raise MessageTooLarge({"file": [_too_large(length)]}, message=_too_large(length))
    if not multipart:
        if content_type not in CSV_TYPES:
            raise HttpError(
                415,
                "Send the CSV as the body with 'Content-Type: text/csv', or as the 'file' "
                f"field of a multipart/form-data body, not {content_type or 'no content type'!r}.",
            )
        return request.body
    upload = request.FILES.get("file")
    if upload is None:
        raise InvalidInput({"file": ["Send the CSV as the multipart field 'file'."]})
    if upload.size > MAX_IMPORT_BYTES:
        raise MessageTooLarge({"file": [_too_large(upload.size)]}, message=_too_large(upload.size))
    return upload.read()


def _too_large(size: int) -> str:
    return f"The file is {size} bytes; at most {MAX_IMPORT_BYTES} (5 MB) can be imported at once."


@router.get(
    "/suppressions/export",
    response={200: None, **ERRORS},
    summary="Export the list as CSV",
    openapi_extra={"responses": {200: {"description": "The list as CSV", **CSV_BODY}}},
)
def export_suppressions(request):
    """The whole list as a CSV download (address, reason, source, created_at, expires_at;
    by address), streamed; the import reads it back."""
    response = StreamingHttpResponse(
        suppressions_export(account=request.account), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = 'attachment; filename="suppressions.csv"'
    return response


# Last: its {address} would otherwise take the paths above (a route matches on the path alone).
@router.delete(
    "/suppressions/{path:address}", response={204: None, **ERRORS}, summary="Remove an address"
)
def delete_suppression(request, address: str):
    """Take an address off the list (URL-encode it: `/suppressions/ann%40example.org`); mail
    to it is sent again. 404 if it is not on the account's list."""
    if not suppression_delete(account=request.account, address=address):
        raise Http404("Not on the suppression list.")
    return Status(204, None)
