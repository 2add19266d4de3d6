"""S1R and S3R: the throughput and resume scenarios (S1, S3) against the Responses API.

The same loads as S1 and S3, sent as ``POST /v1/responses`` with ``stream: true`` and
``max_output_tokens`` 200 (``fakeai-streams bench --api responses``). What differs is the
stream: a Responses stream of 200 text tokens is 208 events (``response.created``,
``response.in_progress``, the item and content part opened, 200 deltas, their ``done`` events,
``response.completed``), each one log entry, where a chat stream has one chunk per token plus
its role and finish chunks. TTFT is timed at the first ``response.output_text.delta``. S3R
resumes with ``GET /v1/responses/{id}?stream=true&starting_after=<sequence_number>`` and
checks every stream by ``sequence_number`` and by its text against a full replay.
"""

from __future__ import annotations

from fakeai.services.bench.driver import Driver, stack_meter
from fakeai.services.bench.report import md_table

__all__ = ["s1r", "s3r"]


def s1r(driver: Driver) -> list[str]:
    """S1 on ``/v1/responses``: one row per level of ``scale.s1``."""
    stack = driver.stack("s1r")
    notes: list[str] = []
    try:
        rows = driver.throughput_rows(
            stack.url, stack_meter(stack), driver.scale.s1, notes, endpoint="responses"
        )
    finally:
        stack.stop()
    return [
        "## S1R throughput, Responses API (latency off)",
        "",
        f"S1's load on `POST /v1/responses` (`fakeai-streams bench --api responses`): closed "
        f"loop, {driver.scale.duration_s:g} s per row, `max_output_tokens` 200 (208 events "
        "per response, each one chunk here), `X-FakeAI-TTFT-Ms: 0`, `X-FakeAI-ITL-Ms: 0`, "
        "unique prompts. TTFT = request sent -> first `response.output_text.delta`.",
        "",
        *md_table(driver.THROUGHPUT_HEAD, rows),
        *[f"- {n}" for n in notes],
        "",
    ]


def s3r(driver: Driver) -> list[str]:
    """S3 on ``/v1/responses``: resumes with ``starting_after``."""
    stack = driver.stack("s3r")
    try:
        rows = driver.resume_rows(stack.url, stack_meter(stack), endpoint="responses")
    finally:
        stack.stop()
    return [
        "## S3R resume, Responses API",
        "",
        f"{driver.scale.s3} concurrent responses of 200 tokens (`max_output_tokens`); every "
        f"client drops its connection every {driver.S3_EVERY} events, stays away "
        f"{driver.S3_DELAY_MS:g} ms, and resumes with `GET /v1/responses/{{id}}?stream=true"
        "&starting_after=<the last sequence_number it handled>`; gaps and duplicates are "
        "counted by `sequence_number` across connections, and each response's text is "
        "compared with a full `GET /v1/responses/{id}?stream=true`. Resume latency = "
        "reconnect sent -> first resumed event.",
        "",
        *md_table(driver.RESUME_HEAD, rows),
    ]
