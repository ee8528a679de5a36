"""A check of our own for schemathesis (loaded by tests/e2e/test_fuzz.py through SCHEMATHESIS_HOOKS): a request
the schema allows may be refused only for what no schema can state, recognised by its error code. A 422
`invalid_request` on such a request means the schema promises more than the service takes: a contract bug."""

from __future__ import annotations

import json

import schemathesis

# What a schema-valid request may still meet: a URL whose host, port or address is refused, bytes that are not an
# image, ids nobody holds, a stored image without its bytes, a decision on a changed image, the key's scope or
# rate, a full process.
SEMANTIC_REFUSALS = frozenset(
    {
        "url_refused",
        "invalid_image",
        "too_many_pixels",
        "image_not_found",
        "source_not_found",
        "image_not_refetchable",
        "image_removed",
        "nothing_to_undo",
        "review_conflict",
        "unauthorized",
        "forbidden",
        "rate_limited",
        "too_busy",
    }
)


@schemathesis.check
def schema_valid_requests_are_refused_only_for_their_meaning(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not 400 <= response.status_code < 500:
        return None
    try:
        code = json.loads(response.content).get("code")
    except (ValueError, AttributeError):
        code = None
    if code not in SEMANTIC_REFUSALS:
        raise AssertionError(
            f"a request the schema allows was refused with {response.status_code} {code!r}: {response.content[:300]!r}"
        )
    return None
