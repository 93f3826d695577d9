-- A customer's limits raised (or lowered) above their KYC tier by an
-- approved maker-checker action; each field left NULL keeps the tier's.
CREATE TABLE limit_overrides (
    customer_id TEXT PRIMARY KEY,
    balance_cap BIGINT CHECK (balance_cap IS NULL OR balance_cap >= 0),
    per_payment BIGINT CHECK (per_payment IS NULL OR per_payment >= 0),
    daily BIGINT CHECK (daily IS NULL OR daily >= 0),
    monthly BIGINT CHECK (monthly IS NULL OR monthly >= 0),
    approval_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
