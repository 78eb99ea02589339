"""The API over real HTTP under gunicorn: concurrent idempotent sends across worker processes,
and schemathesis fuzzing against the published OpenAPI schema."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from harness.smtp import SmtpServer
from tests.appserver import create_account, start_app_server

EMAIL = {"from": "shop@example.com", "to": "ann@example.org", "subject": "Order 42",
         "text": "Thanks."}  # fmt: skip


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    sink = SmtpServer().start()
    server = start_app_server(tmp_path_factory.mktemp("live"), workers=4)
    server.tokens["alice"] = create_account(server, "alice", smtp_port=sink.port)
    server.sink = sink
    yield server
    server.stop()
    sink.stop()


def test_twenty_parallel_identical_posts_send_exactly_once(live):
    before = len(live.sink.received)
    headers = {"Idempotency-Key": "parallel-order-42"}

    api = live.api(live.tokens["alice"])

    def post(_):
        response = api.post("/api/v1/emails", EMAIL, headers=headers)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, range(20)))

    statuses = sorted(status for status, _ in answers)
    assert set(statuses) <= {201, 409}, answers
    assert 201 in statuses
    ids = {body["id"] for status, body in answers if status == 201}
    ids |= {body["email_id"] for status, body in answers if status == 409}
    assert len(ids) == 1, "every answer must be about the same single email"
    assert len(live.sink.received) - before == 1
    # Once delivered, a repeat replays the stored answer.
    status, body = post(None)
    assert status == 201 and body["id"] in ids


def _remembered_then_revoked(live, name: str, revoke: str):
    """A new token every worker has used (so remembers, almost surely: 24 requests over 4),
    then revoked by `revoke`, Python run by manage.py in another process with `prefix` bound."""
    token = live.factory("token", "alice", "--name", name)["token"]
    api = live.api(token)
    for _ in range(24):
        assert api.get("/api/v1/emails").status_code == 200
    code = f"from mailer.models import ApiToken; prefix = {token[:10]!r}; {revoke}"
    live.manage("shell", "-c", code)
    return api


def test_a_token_revoked_by_another_process_stops_in_every_worker_at_once(live):
    """Revoked through the service in another process (manage.py): its stamp in Redis reaches
    every worker's next request, whatever they remember."""
    revoke = "from mailer.services import token_revoke; "
    revoke += "token_revoke(token=ApiToken.objects.get(prefix=prefix))"
    api = _remembered_then_revoked(live, "revoked-now", revoke)
    assert [api.get("/api/v1/emails").status_code for _ in range(24)] == [401] * 24


def test_a_token_revoked_without_its_stamp_stops_in_every_worker_within_the_bound(live):
    """Revoked behind the service's back (its stamp lost, as when Redis is away): workers
    remember tokens for TOKEN_CACHE_SECONDS (1 s by default), so any request sent after that
    bound is refused; what came before it may still pass."""
    bound = 1.0
    revoke = "from django.utils import timezone; "
    revoke += "ApiToken.objects.filter(prefix=prefix).update(revoked_at=timezone.now())"
    api = _remembered_then_revoked(live, "revoked-live", revoke)
    revoked_at = time.monotonic()
    late = []
    while len(late) < 24:
        started = time.monotonic()
        status = api.get("/api/v1/emails").status_code
        if started >= revoked_at + bound:
            late.append(status)
        else:
            assert status in (200, 401)
    assert late == [401] * 24


def fuzz_operation(operation, token: str) -> int:
    """Up to 150 generated requests for one operation, each checked against the schema;
    returns how many were made."""
    calls = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case) -> None:
        calls.append(case)
        case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"},
            checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
            timeout=30,
        )

    run()
    return len(calls)


def test_fuzzed_requests_get_no_5xx_and_match_the_schema(live):
    schema = schemathesis.openapi.from_url(f"{live.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 3
    failures, calls = [], {}
    for operation in operations:
        name = f"{operation.method.upper()} {operation.path}"
        try:
            calls[name] = fuzz_operation(operation, live.tokens["alice"])
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{name}: {exc}")
    assert not failures, "\n\n".join(failures)
    print("fuzzed requests per operation:", calls)
    assert all(count >= 10 for count in calls.values()), calls
