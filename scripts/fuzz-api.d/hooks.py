"""Schemathesis hooks for scripts/fuzz-api.

A fresh Idempotency-Key per request: keys generated from the schema's pattern
repeat often ("0", "!"), and a repeated key answers from the stored response
(or 422 idempotency_key_reused) instead of running the handler, which would
hide the handler from the fuzzer. Keys the schema forbids are left alone, so
that negative cases still test the header's validation.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"^[!-~]{1,255}$")


@schemathesis.hook
def before_call(context, case, **kwargs):
    headers = case.headers
    if not headers:
        return
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and VALID_KEY.match(key):
        headers = dict(headers)
        headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4()}"
        case.headers = headers
