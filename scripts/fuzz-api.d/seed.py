"""Seeds the accounts, the transfer and the hold that the OpenAPI document's
examples name, so that the fuzzer's examples phase reaches the ledger rather
than stopping at account_not_found.

Usage: seed.py BASE_URL API_KEY
"""

import json
import sys
import urllib.error
import urllib.request

BASE, KEY = sys.argv[1], sys.argv[2]


def post(path, body):
    request = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {KEY}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"seed-{path}-{body['id']}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    if status not in (200, 201):
        sys.exit(f"seed: POST {path} {body['id']} answered {status}")


def account(account_id, kind, constraint):
    post(
        "/v1/ledger/accounts",
        {"id": account_id, "currency": "CNY", "kind": kind,
         "constraint": constraint, "owner": "customer-" + account_id},
    )


account("bank-settlement", "asset", "none")
account("wallet-alice", "liability", "no_overdraft")
account("wallet-bob", "liability", "no_overdraft")
post(
    "/v1/ledger/transfers",
    {"id": "topup-1001", "debit_account_id": "bank-settlement",
     "credit_account_id": "wallet-alice", "amount": 1_000_000, "currency": "CNY",
     "code": "topup.card"},
)
post(
    "/v1/ledger/holds",
    {"id": "hold-1001", "debit_account_id": "wallet-alice",
     "credit_account_id": "wallet-bob", "amount": 5_000, "currency": "CNY",
     "code": "card.auth", "timeout_ms": 3_600_000},
)
