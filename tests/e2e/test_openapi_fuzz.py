"""schemathesis against the document the edge serves (issue 10, "Fuzzing in the suite").

A real stack (producer + metrics consumer + the edge under real uvicorn, on the session's
single Redis): the schema is loaded from ``GET /openapi.json`` as a client would, and every
operation in it gets requests that schemathesis generates from it, valid ones and invalid ones
(bodies, headers, query and path parameters). Every answer must be:

- no 5xx (``not_a_server_error``): a request, however malformed, is the client's error;
- a status the document lists for that operation (``status_code_conformance``), with its
  content type, body schema and headers as documented (``content_type_conformance``,
  ``response_schema_conformance``, ``response_headers_conformance``).

Not checked, on purpose: ``positive_data_acceptance`` (the caps that settings set, such as
``max_output_tokens``, are not in the document, which is the same for every configuration: a
schema-valid request beyond one is a 400, see :mod:`fakeai.services.edge.openapi`) and
``negative_data_rejection`` (query parameters are read leniently: of a repeated
``?window=`` the last value counts, and an empty one means the default).

Bounded and deterministic: hypothesis runs derandomized (a fixed seed per operation, no example
database), at most :data:`EXAMPLES` cases per operation and mode, no shrinking; the caps are
small here (timing headers up to 50 ms, 64 output tokens, streams of at most 5 s), so no
generated request waits long. About 40 cases per operation and mode, in 20-40 s.
"""

from __future__ import annotations

import os
import time
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.support.stack import run_stack

from fakeai.config import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(180)]

EXAMPLES = int(os.environ.get("FAKEAI_FUZZ_EXAMPLES", "40"))
"""Generated cases per operation and mode (``FAKEAI_FUZZ_EXAMPLES=500`` for a deeper run)."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    base_url: str,
    calls: dict[str, int],
) -> None:
    """Run :data:`EXAMPLES` generated cases of ``operation``; raise on the first failure."""

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(mode))
    def call(case: schemathesis.Case) -> None:
        calls[f"{operation.label} ({mode})"] += 1
        case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=15)

    call()


def test_schemathesis_finds_no_server_error_and_only_documented_statuses(
    redis_url: str,
    key_prefix: str,
    sync_r: Any,  # sync_r: the prefix's keys go afterwards
) -> None:
    settings = Settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        latency_simulation=False,
        max_timing_ms=50,
        max_output_tokens=64,
        max_stream_s=5,
        heartbeat_s=1,
    )
    with run_stack(settings, metrics=True) as stack:
        schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json", timeout=10)
        failures: dict[str, str] = {}
        calls: dict[str, int] = {}
        t0 = time.monotonic()
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in GenerationMode:
                label = f"{operation.label} ({mode})"
                calls[label] = 0
                try:
                    _fuzz(operation, mode, stack.url, calls)
                except Unsatisfiable:
                    # Nothing in it can be made invalid (no parameter, no body).
                    assert mode is GenerationMode.NEGATIVE, label
                    del calls[label]
                except (Exception, BaseExceptionGroup) as e:  # report every operation's
                    failures[label] = f"{type(e).__name__}: {e}"
        took = time.monotonic() - t0
    assert not failures, "\n\n".join(f"{op}:\n{why}" for op, why in failures.items())
    assert calls, "the document lists no operation"
    assert all(calls.values()), calls
    print(
        f"schemathesis: {sum(calls.values())} requests over {len(calls)} operations in {took:.0f} s"
    )
