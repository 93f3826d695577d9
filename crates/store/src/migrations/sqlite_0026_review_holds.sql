-- The resolver finds merchant payments by state and age: pending ones to
-- carry on, held ones whose review hold a crash left unplaced, and ones
-- rejected in review whose hold it left unreleased (p2p_payments has had
-- this index since 0014).
CREATE INDEX merchant_payments_state ON merchant_payments (state, updated_at);
