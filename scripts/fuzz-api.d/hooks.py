"""Schemathesis hooks for scripts/fuzz-api.

A fresh Idempotency-Key per request: keys generated from the schema's pattern
repeat often ("0", "!"), and a repeated key answers from the stored response
(or 422 idempotency_key_reused) instead of running the handler, which would
hide the handler from the fuzzer. Keys the schema forbids are left alone, so
that negative cases still test the header's validation.
"""

import os
import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[!-~]{1,255}$")


# Operations that end every session of the customer: they get the spare
# customer's session, so the main one lives through the run.
SESSION_ENDERS = {
    ("DELETE", "/v1/auth/sessions/current"),
    ("POST", "/v1/me/sessions/revoke-all"),
    # Reached through the link from GET /v1/me/sessions with the main
    # session's own id.
    ("POST", "/v1/me/sessions/{id}/revoke"),
    ("POST", "/v1/me/password"),
}


@schemathesis.hook
def before_call(context, case, **kwargs):
    spare = os.environ.get("COFFER_FUZZ_SPARE_SESSION")
    if spare and (case.method.upper(), case.path) in SESSION_ENDERS and case.headers is not None:
        if case.headers.get("Authorization", "").startswith("Bearer cs_"):
            headers = dict(case.headers)
            headers["Authorization"] = f"Bearer {spare}"
            case.headers = headers
    headers = case.headers
    if not headers:
        return
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and VALID_KEY.match(key):
        headers = dict(headers)
        headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4()}"
        case.headers = headers
