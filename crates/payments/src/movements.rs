//! Every customer money movement that completed in a period, from the
//! records each payment kind keeps (the activity feed for top-ups,
//! withdrawals and bill payments; `p2p_payments` for both sides of a P2P
//! payment; `merchant_payments`), for regulatory reporting. Read only, and
//! only what succeeded: a failed payment moved nothing. Conversions are
//! left out (the customer's own money changing currency is not a movement
//! to or from anyone).

use coffer_store::sql::{Row, Sql};
use coffer_store::{sql_params, StoreError};

/// At most this many movements are read for one period: a report run over
/// more must narrow its period (a day of a large bank is far below this).
pub const MOVEMENTS_PER_PERIOD_MAX: i64 = 1_000_000;

/// One side of one completed payment, as one customer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// The record's id (`fnd_…`, `p2p_…`, `mpy_…`, `bil_…`): the transaction id reports cite.
    pub transaction_id: String,
    /// `top_up`, `withdrawal`, `bill_payment`, `p2p_transfer`, `merchant_payment`.
    pub kind: String,
    pub customer_id: String,
    /// `in` or `out`, seen from the customer's wallet.
    pub direction: String,
    /// The other party's id when it is a customer or merchant (P2P, merchant payments).
    pub counterparty_id: Option<String>,
    /// Minor units, positive.
    pub amount: i64,
    pub currency: String,
    /// When the money moved (ns since the epoch).
    pub at: i64,
}

fn movement(row: &Row) -> Result<Movement, StoreError> {
    Ok(Movement {
        transaction_id: row.text(0)?,
        kind: row.text(1)?,
        customer_id: row.text(2)?,
        direction: row.text(3)?,
        counterparty_id: row.opt_text(4)?,
        amount: row.int(5)?,
        currency: row.text(6)?,
        at: row.int(7)?,
    })
}

/// Movements completed in `[from, until)` (ns), ordered by customer, time
/// and id so a report over them is deterministic.
pub fn completed_between(
    db: &mut dyn Sql,
    from: i64,
    until: i64,
) -> Result<Vec<Movement>, StoreError> {
    // Activity rows are stamped when the record was created; what
    // succeeded then moved money (a later refund is its own movement).
    let rows = db.query(
        "SELECT source_id, kind, customer_id, direction, CAST(NULL AS TEXT), amount, currency, created_at FROM activity \
         WHERE kind IN ('top_up', 'withdrawal', 'bill_payment') AND status IN ('succeeded', 'partially_refunded', 'refunded') \
         AND created_at >= $1 AND created_at < $2 \
         UNION ALL \
         SELECT id, 'p2p_transfer', customer_id, 'out', payee_id, amount, currency, created_at FROM p2p_payments \
         WHERE state = 'succeeded' AND created_at >= $1 AND created_at < $2 \
         UNION ALL \
         SELECT id, 'p2p_transfer', payee_id, 'in', customer_id, amount, currency, created_at FROM p2p_payments \
         WHERE state = 'succeeded' AND created_at >= $1 AND created_at < $2 \
         UNION ALL \
         SELECT id, 'merchant_payment', customer_id, 'out', merchant_id, amount, currency, COALESCE(paid_at, created_at) FROM merchant_payments \
         WHERE state = 'succeeded' AND customer_id IS NOT NULL AND COALESCE(paid_at, created_at) >= $1 AND COALESCE(paid_at, created_at) < $2 \
         ORDER BY 3, 8, 1 LIMIT $3",
        sql_params![from, until, MOVEMENTS_PER_PERIOD_MAX],
    )?;
    rows.iter().map(movement).collect()
}
