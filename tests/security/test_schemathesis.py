"""Requests generated from the OpenAPI schema, valid and invalid, never get a server error (schemathesis, ASGI).

They are sent signed in (the admin's API token), so they reach the routes' own checks rather than the 401."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

EXAMPLES = 25
# The SSE stream never ends, so a generated call to it would hang rather than answer.
EXCLUDED = {("GET", "/api/runs/{run_id}/events")}


def _fuzz(operation, mode: GenerationMode, headers: dict[str, str]) -> None:  # noqa: ANN001
    """EXAMPLES deterministic cases of one operation; each must not get a 5xx."""

    # Runs it creates are queued on the test session's own queue, which no worker consumes.
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:  # noqa: ANN001
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    check()


def test_no_server_errors_anywhere_in_the_schema(app, admin) -> None:  # noqa: ANN001
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=admin.headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    tested, failures = [], []
    for operation in operations:
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            tested.append(f"{mode.value} {operation.method.upper()} {operation.path}")
            try:
                _fuzz(operation, mode, admin.headers)
            except Unsatisfiable:
                # Negative mode on an operation without parameters or body has nothing to make invalid.
                assert mode == GenerationMode.NEGATIVE, tested[-1]
            except Exception as error:  # noqa: BLE001 - collect every operation's failure, then report them all
                failures.append(f"{tested[-1]}: {str(error)[:1500]}")
    assert len(tested) >= 30, tested
    assert not failures, "\n\n".join(failures)
