//! Turning stored columns back into ledger types, shared by both backends.
//! Anything that does not parse is `Corrupt`: storage is never trusted blindly.

use std::collections::BTreeMap;

use coffer_core::{Amount, Code, Currency, Identifier, Timestamp};
use coffer_ledger::{
    Account, AccountKind, AccountSpec, AccountStatus, BalanceConstraint, Balances, Hold, HoldState,
    JournalEntry, Metadata, Transfer, TransferKind,
};

use crate::StoreError;

pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

pub(crate) fn id(value: &str) -> Result<Identifier, StoreError> {
    Identifier::from_stored(value).map_err(|_| corrupt("id", value))
}

pub(crate) fn currency(value: &str) -> Result<Currency, StoreError> {
    Currency::parse(value).map_err(|_| corrupt("currency", value))
}

pub(crate) fn amount(value: i64) -> Result<Amount, StoreError> {
    Amount::new(value).map_err(|_| corrupt("amount", &value.to_string()))
}

pub(crate) fn code(value: &str) -> Result<Code, StoreError> {
    Code::parse(value).map_err(|_| corrupt("code", value))
}

pub(crate) fn metadata(value: Option<&str>) -> Result<Metadata, StoreError> {
    let Some(text) = value else {
        return Ok(Metadata::default());
    };
    let map: BTreeMap<String, String> =
        serde_json::from_str(text).map_err(|_| corrupt("metadata", text))?;
    Metadata::new(map).map_err(|_| corrupt("metadata", text))
}

pub(crate) fn metadata_json(metadata: &Metadata) -> Option<String> {
    if metadata.is_empty() {
        None
    } else {
        serde_json::to_string(metadata.entries()).ok()
    }
}

pub(crate) fn hash(value: &[u8]) -> Result<[u8; 32], StoreError> {
    value
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("hash of {} bytes", value.len())))
}

/// The columns of an `accounts` row, in `ACCOUNT_COLUMNS` order.
pub(crate) struct AccountRow<'a> {
    pub id: &'a str,
    pub currency: &'a str,
    pub kind: &'a str,
    pub constraint: &'a str,
    pub owner: &'a str,
    pub status: &'a str,
    pub balances: [i64; 4],
    pub opened_at: i64,
    pub closed_at: Option<i64>,
}

pub(crate) const ACCOUNT_COLUMNS: &str = "id, currency, kind, balance_constraint, owner, status, \
     debits_posted, credits_posted, debits_pending, credits_pending, opened_at, closed_at";

impl AccountRow<'_> {
    pub(crate) fn into_account(self) -> Result<Account, StoreError> {
        Ok(Account {
            spec: AccountSpec {
                id: id(self.id)?,
                currency: currency(self.currency)?,
                kind: AccountKind::parse(self.kind)
                    .ok_or_else(|| corrupt("account kind", self.kind))?,
                constraint: BalanceConstraint::parse(self.constraint)
                    .ok_or_else(|| corrupt("constraint", self.constraint))?,
                owner: id(self.owner)?,
            },
            status: match self.status {
                "open" => AccountStatus::Open,
                "closed" => AccountStatus::Closed,
                other => return Err(corrupt("account status", other)),
            },
            balances: balances(self.balances)?,
            opened_at: Timestamp::from_nanos(self.opened_at),
            closed_at: self.closed_at.map(Timestamp::from_nanos),
        })
    }
}

pub(crate) fn status_str(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Open => "open",
        AccountStatus::Closed => "closed",
    }
}

pub(crate) fn balances(
    [debits_posted, credits_posted, debits_pending, credits_pending]: [i64; 4],
) -> Result<Balances, StoreError> {
    if debits_posted < 0 || credits_posted < 0 || debits_pending < 0 || credits_pending < 0 {
        return Err(StoreError::Corrupt("negative balance total".into()));
    }
    Ok(Balances {
        debits_posted,
        credits_posted,
        debits_pending,
        credits_pending,
    })
}

pub(crate) fn balances_array(b: &Balances) -> [i64; 4] {
    [
        b.debits_posted,
        b.credits_posted,
        b.debits_pending,
        b.credits_pending,
    ]
}

pub(crate) const TRANSFER_COLUMNS: &str =
    "timestamp, id, kind, debit_account_id, credit_account_id, amount, currency, code, \
     metadata, hold_id, expires_at, \
     debit_debits_posted, debit_credits_posted, debit_debits_pending, debit_credits_pending, \
     credit_debits_posted, credit_credits_posted, credit_debits_pending, credit_credits_pending";

pub(crate) struct TransferRow<'a> {
    pub timestamp: i64,
    pub id: &'a str,
    pub kind: &'a str,
    pub debit: &'a str,
    pub credit: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub code: &'a str,
    pub metadata: Option<&'a str>,
    pub hold: Option<&'a str>,
    pub expires_at: Option<i64>,
    pub debit_after: [i64; 4],
    pub credit_after: [i64; 4],
}

impl TransferRow<'_> {
    pub(crate) fn into_transfer(self) -> Result<Transfer, StoreError> {
        Ok(Transfer {
            id: id(self.id)?,
            kind: TransferKind::parse(self.kind)
                .ok_or_else(|| corrupt("transfer kind", self.kind))?,
            debit: id(self.debit)?,
            credit: id(self.credit)?,
            amount: amount(self.amount)?,
            currency: currency(self.currency)?,
            code: code(self.code)?,
            metadata: metadata(self.metadata)?,
            hold: self.hold.map(id).transpose()?,
            expires_at: self.expires_at.map(Timestamp::from_nanos),
            timestamp: Timestamp::from_nanos(self.timestamp),
            debit_after: balances(self.debit_after)?,
            credit_after: balances(self.credit_after)?,
        })
    }
}

pub(crate) const HOLD_COLUMNS: &str =
    "id, debit_account_id, credit_account_id, amount, currency, expires_at, state, resolved_by, captured";

pub(crate) struct HoldRow<'a> {
    pub id: &'a str,
    pub debit: &'a str,
    pub credit: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub expires_at: i64,
    pub state: &'a str,
    pub resolved_by: Option<&'a str>,
    pub captured: Option<i64>,
}

impl HoldRow<'_> {
    pub(crate) fn into_hold(self) -> Result<Hold, StoreError> {
        Ok(Hold {
            id: id(self.id)?,
            debit: id(self.debit)?,
            credit: id(self.credit)?,
            amount: amount(self.amount)?,
            currency: currency(self.currency)?,
            expires_at: Timestamp::from_nanos(self.expires_at),
            state: HoldState::parse(self.state).ok_or_else(|| corrupt("hold state", self.state))?,
            resolved_by: self.resolved_by.map(id).transpose()?,
            captured: self.captured.map(amount).transpose()?,
        })
    }
}

pub(crate) const JOURNAL_COLUMNS: &str =
    "batch, first_timestamp, last_timestamp, event_count, previous_hash, hash";

pub(crate) fn journal_entry(
    batch: i64,
    first: i64,
    last: i64,
    count: i64,
    previous: &[u8],
    this: &[u8],
) -> Result<JournalEntry, StoreError> {
    Ok(JournalEntry {
        batch: u64::try_from(batch).map_err(|_| corrupt("journal batch", &batch.to_string()))?,
        first_timestamp: Timestamp::from_nanos(first),
        last_timestamp: Timestamp::from_nanos(last),
        event_count: u64::try_from(count)
            .map_err(|_| corrupt("event count", &count.to_string()))?,
        previous_hash: hash(previous)?,
        hash: hash(this)?,
    })
}

/// Splits a list of ids into chunks that fit a statement's parameter limit.
pub(crate) const IDS_PER_QUERY_MAX: usize = 500;
