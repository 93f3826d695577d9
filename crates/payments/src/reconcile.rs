//! Reconciliation: the connector's settlement report against our funding
//! records and the ledger, listing every break.
//!
//! - `missing_in_ledger`: the connector settled an operation that we have no
//!   record of, or that our ledger never captured (failed, still pending, or
//!   no capture transfer);
//! - `missing_at_connector`: we captured an operation the connector did not
//!   settle;
//! - `amount_mismatch`: both sides have it, with different amounts;
//! - `stuck_pending`: a record still pending past the deadline.
//!
//! Read-only: it changes nothing, so it can run any time, from the CLI
//! (`coffer reconcile`) or the back office.

use std::collections::HashSet;

use coffer_core::Identifier;
use coffer_store::sql::SqlStore;
use coffer_store::{sql_params, LedgerReader, StoreError};

use crate::connectors::{ConnectorKind, SettlementLine};
use crate::funding::capture_id;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    MissingInLedger,
    MissingAtConnector,
    AmountMismatch,
    StuckPending,
}

impl BreakKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::MissingInLedger => "missing_in_ledger",
            BreakKind::MissingAtConnector => "missing_at_connector",
            BreakKind::AmountMismatch => "amount_mismatch",
            BreakKind::StuckPending => "stuck_pending",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub kind: BreakKind,
    pub funding_id: Option<String>,
    pub connector_reference: Option<String>,
    /// Minor units on our side (the capture, or the record)…
    pub ours: Option<i64>,
    /// …in this currency (ISO 4217).
    pub ours_currency: Option<String>,
    /// Minor units in the connector's report…
    pub theirs: Option<i64>,
    /// …in this currency.
    pub theirs_currency: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    pub connector: ConnectorKind,
    pub from: i64,
    pub until: i64,
    /// Report lines that matched a captured funding of the same amount.
    pub matched: usize,
    pub report_lines: usize,
    pub breaks: Vec<Break>,
}

/// Matches `lines` (the connector's report for submissions in
/// `[from, until)`) against the records and the ledger; pending records
/// created before `stuck_before` are breaks too.
pub fn reconcile(
    sql: &SqlStore,
    reader: &dyn LedgerReader,
    connector: ConnectorKind,
    lines: &[SettlementLine],
    (from, until): (i64, i64),
    stuck_before: i64,
) -> Result<Reconciliation, StoreError> {
    let mut breaks = Vec::new();
    let mut matched = 0;
    let mut seen = HashSet::new();
    for line in lines {
        seen.insert(line.merchant_reference.clone());
        let row = sql.run(|db| {
            db.query_opt(
                "SELECT state, amount FROM fundings WHERE id = $1 AND connector = $2",
                sql_params![line.merchant_reference.as_str(), connector.as_str()],
            )
        })?;
        let missing = |detail: String| Break {
            kind: BreakKind::MissingInLedger,
            funding_id: Some(line.merchant_reference.clone()),
            connector_reference: Some(line.reference.clone()),
            ours: None,
            ours_currency: None,
            theirs: Some(line.amount),
            theirs_currency: Some(line.currency.clone()),
            detail,
        };
        let Some(row) = row else {
            breaks.push(missing(
                "no funding record with this merchant reference".into(),
            ));
            continue;
        };
        let state = row.text(0)?;
        if state != "succeeded" {
            breaks.push(missing(format!(
                "settled by the connector, but {state} here"
            )));
            continue;
        }
        let capture = Identifier::parse(&capture_id(&line.merchant_reference))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let Some(transfer) = reader.transfer(&capture)? else {
            breaks.push(missing(
                "succeeded here, but the ledger holds no capture".into(),
            ));
            continue;
        };
        let ours = transfer.amount.minor_units();
        if ours != line.amount || transfer.currency.as_str() != line.currency {
            breaks.push(Break {
                kind: BreakKind::AmountMismatch,
                funding_id: Some(line.merchant_reference.clone()),
                connector_reference: Some(line.reference.clone()),
                ours: Some(ours),
                ours_currency: Some(transfer.currency.as_str().to_string()),
                theirs: Some(line.amount),
                theirs_currency: Some(line.currency.clone()),
                detail: format!(
                    "captured {ours} {}, settled {} {}",
                    transfer.currency.as_str(),
                    line.amount,
                    line.currency
                ),
            });
            continue;
        }
        matched += 1;
    }
    let ours = sql.run(|db| {
        db.query(
            "SELECT id, amount, connector_reference, currency FROM fundings WHERE connector = $1 AND state = 'succeeded' \
             AND created_at >= $2 AND created_at < $3 ORDER BY created_at, id",
            sql_params![connector.as_str(), from, until],
        )
    })?;
    for row in &ours {
        let funding_id = row.text(0)?;
        if !seen.contains(&funding_id) {
            breaks.push(Break {
                kind: BreakKind::MissingAtConnector,
                funding_id: Some(funding_id),
                connector_reference: row.opt_text(2)?,
                ours: Some(row.int(1)?),
                ours_currency: Some(row.text(3)?),
                theirs: None,
                theirs_currency: None,
                detail: "captured here, not in the connector's settlement report".into(),
            });
        }
    }
    let stuck = sql.run(|db| {
        db.query(
            "SELECT id, amount, connector_reference, stage, currency FROM fundings WHERE connector = $1 AND state = 'pending' \
             AND created_at < $2 ORDER BY created_at, id",
            sql_params![connector.as_str(), stuck_before],
        )
    })?;
    for row in &stuck {
        breaks.push(Break {
            kind: BreakKind::StuckPending,
            funding_id: Some(row.text(0)?),
            connector_reference: row.opt_text(2)?,
            ours: Some(row.int(1)?),
            ours_currency: Some(row.text(4)?),
            theirs: None,
            theirs_currency: None,
            detail: format!("still pending (stage {})", row.text(3)?),
        });
    }
    Ok(Reconciliation {
        connector,
        from,
        until,
        matched,
        report_lines: lines.len(),
        breaks,
    })
}
