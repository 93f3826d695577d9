"""Signs two customers and a staff member in, so that the fuzzer reaches the
customer (/v1/me…) and back-office (/v1/staff…) operations, not just their
401s. The second customer's session is the one the hooks give to sign-out
and revoke-all, so those cannot end the first one's. Prints
"CUSTOMER_TOKEN SPARE_TOKEN STAFF_TOKEN".

The customer registers like anyone: the demo server prints the simulated SMS
on its console, which this reads from the server's log. The staff member was
made by `coffer staff create`; their authenticator code is computed here
(RFC 6238).

Usage: sessions.py BASE_URL SERVER_LOG STAFF_USERNAME STAFF_PASSWORD STAFF_SEED
"""

import base64
import hashlib
import hmac
import json
import re
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid

BASE, LOG, USERNAME, PASSWORD, SEED = sys.argv[1:6]


def post(path, body, headers=None):
    request = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def totp(seed):
    key = base64.b32decode(seed + "=" * (-len(seed) % 8))
    counter = struct.pack(">Q", int(time.time()) // 30)
    digest = hmac.new(key, counter, hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def register(phone):
    status, started = post("/v1/auth/registrations", {"contact": phone},
                           {"Idempotency-Key": f"fuzz-{uuid.uuid4()}"})
    if status != 202:
        sys.exit(f"sessions: registration answered {status}: {started}")
    code = None
    pattern = r"simulated sms to " + re.escape(phone) + r"\].*?code is (\d{6})"
    for _ in range(100):
        with open(LOG, encoding="utf-8", errors="replace") as log:
            found = re.findall(pattern, log.read())
        if found:
            code = found[-1]
            break
        time.sleep(0.2)
    if code is None:
        sys.exit("sessions: no code arrived on the demo console")
    status, registered = post(
        f"/v1/auth/registrations/{started['registration_id']}/complete",
        {"code": code, "password": "fuzzing is caring", "display_name": "Fuzz", "accept_terms": "2026-11"},
    )
    if status != 201:
        sys.exit(f"sessions: completing the registration answered {status}: {registered}")
    return registered["session"]["token"]


customer = register("+8613999990000")
spare = register("+8613999990001")
status, staff = post("/v1/staff/sessions", {"username": USERNAME, "password": PASSWORD, "code": totp(SEED)})
if status != 201:
    sys.exit(f"sessions: staff sign-in answered {status}: {staff}")
print(customer, spare, staff["token"])
