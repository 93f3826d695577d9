-- Passkeys as a step-up method: the WebAuthn request state (the challenge
-- the authenticator must sign and the credentials it may answer with) lives
-- in the step-up challenge's own row, so the assertion is bound to that
-- challenge and through it to the operation, amount, currency and payee.
-- NULL for the other methods.
ALTER TABLE challenges ADD COLUMN passkey_state TEXT;

-- Key rotation without downtime: a new data key is stored at once (every
-- running instance learns it on its next refresh and can decrypt with it)
-- but is used for new writes only from active_from on, so no instance
-- writes a value that another cannot read yet. NULL: active from created_at.
ALTER TABLE data_keys ADD COLUMN active_from BIGINT;
