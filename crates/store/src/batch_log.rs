//! The batch log: what makes a ledger commit durable.
//!
//! Why a log: writing a batch straight into the indexed tables (accounts,
//! transfers and their per-account indexes, holds, journal, idempotency keys)
//! dirties about a hundred random B-tree pages per commit, and on a 2-core
//! machine that, not the ledger's rules, was the ceiling. A commit now appends
//! one record holding the whole sealed batch (and the responses stored with
//! it) to an append-only log and syncs it: a few sequential pages. The
//! projector (`projection.rs`) then applies many batches at once to the
//! tables, where each hot page is written once per round rather than once per
//! batch. Readers see committed-but-not-yet-projected data through the
//! overlay (`overlay.rs`), so nothing acknowledged is ever invisible.
//!
//! The record format is versioned and self-contained: fixed-width
//! little-endian integers and length-prefixed UTF-8, decoded back through the
//! same row converters the tables use, so a damaged record is `Corrupt`, never
//! trusted.

use coffer_core::Timestamp;
use coffer_ledger::{Account, Event, Hold, HoldChange, JournalEntry, SealedBatch, Transfer};

use crate::convert::{self, AccountRow, HoldRow, TransferRow};
use crate::service::StoredResponse;
use crate::StoreError;

const FORMAT_V1: u8 = 1;

/// One durable record of the log: a sealed batch (absent when a record only
/// stores responses, e.g. of requests the ledger refused) and the idempotent
/// responses written with it.
#[derive(Debug)]
pub struct LogEntry {
    /// 1, 2, 3… in append order; independent of journal batch numbers.
    pub seq: u64,
    pub batch: Option<SealedBatch>,
    pub responses: Vec<StoredResponse>,
}

impl LogEntry {
    /// Rows this entry adds to the tables: what the backlog bound counts.
    pub fn weight(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.events.len()) + self.responses.len()
    }
}

/// Where the log lives; one per database. Appends come from the engine's
/// writer thread only.
pub(crate) trait BatchLog: Send {
    /// The highest sequence number stored (0 when empty).
    fn last_seq(&mut self) -> Result<u64, StoreError>;
    /// Appends one record durably, and in the same transaction forgets the
    /// records up to `prune_through` (already projected).
    fn append(&mut self, seq: u64, record: &[u8], prune_through: u64) -> Result<(), StoreError>;
    /// Records after `after`, in order, at most `limit`.
    fn read_after(&mut self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
}

pub(crate) fn encode(entry: &LogEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        64 + entry.batch.as_ref().map_or(0, |b| b.events.len() * 320) + entry.responses.len() * 256,
    );
    out.push(FORMAT_V1);
    match &entry.batch {
        None => out.push(0),
        Some(batch) => {
            out.push(1);
            put_journal(&mut out, &batch.journal);
            put_len(&mut out, batch.events.len());
            for event in &batch.events {
                match event {
                    Event::AccountOpened(account) => {
                        out.push(1);
                        put_account(&mut out, account);
                    }
                    Event::AccountClosed { account } => {
                        out.push(2);
                        put_account(&mut out, account);
                    }
                    Event::Transfer(transfer) => {
                        out.push(3);
                        put_transfer(&mut out, transfer);
                    }
                }
            }
            put_len(&mut out, batch.accounts.len());
            for account in &batch.accounts {
                put_account(&mut out, account);
            }
            put_len(&mut out, batch.hold_changes.len());
            for change in &batch.hold_changes {
                match change {
                    HoldChange::Placed(hold) => {
                        out.push(1);
                        put_hold(&mut out, hold);
                    }
                    HoldChange::Resolved(hold) => {
                        out.push(2);
                        put_hold(&mut out, hold);
                    }
                }
            }
        }
    }
    put_len(&mut out, entry.responses.len());
    for r in &entry.responses {
        put_str(&mut out, &r.principal);
        put_str(&mut out, &r.key);
        put_str(&mut out, &r.request_hash);
        put_i64(&mut out, i64::from(r.status));
        put_str(&mut out, &r.body);
        put_i64(&mut out, r.created_at);
    }
    out
}

pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<LogEntry, StoreError> {
    let mut input = Reader { bytes, at: 0 };
    let version = input.u8()?;
    if version != FORMAT_V1 {
        return Err(StoreError::Corrupt(format!(
            "log record {seq} has unknown format {version}"
        )));
    }
    let batch = match input.u8()? {
        0 => None,
        1 => {
            let journal = input.journal()?;
            let mut events = Vec::new();
            for _ in 0..input.len()? {
                events.push(match input.u8()? {
                    1 => Event::AccountOpened(input.account()?),
                    2 => Event::AccountClosed {
                        account: input.account()?,
                    },
                    3 => Event::Transfer(input.transfer()?),
                    tag => return Err(bad_tag(seq, "event", tag)),
                });
            }
            let mut accounts = Vec::new();
            for _ in 0..input.len()? {
                accounts.push(input.account()?);
            }
            let mut hold_changes = Vec::new();
            for _ in 0..input.len()? {
                hold_changes.push(match input.u8()? {
                    1 => HoldChange::Placed(input.hold()?),
                    2 => HoldChange::Resolved(input.hold()?),
                    tag => return Err(bad_tag(seq, "hold change", tag)),
                });
            }
            Some(SealedBatch {
                events,
                accounts,
                hold_changes,
                journal,
                expired: 0,
            })
        }
        tag => return Err(bad_tag(seq, "record", tag)),
    };
    let mut responses = Vec::new();
    for _ in 0..input.len()? {
        responses.push(StoredResponse {
            principal: input.string()?,
            key: input.string()?,
            request_hash: input.string()?,
            status: u16::try_from(input.i64()?)
                .map_err(|_| StoreError::Corrupt(format!("log record {seq}: bad status")))?,
            body: input.string()?,
            created_at: input.i64()?,
        });
    }
    if input.at != bytes.len() {
        return Err(StoreError::Corrupt(format!(
            "log record {seq} has {} trailing bytes",
            bytes.len() - input.at
        )));
    }
    Ok(LogEntry {
        seq,
        batch,
        responses,
    })
}

fn bad_tag(seq: u64, what: &str, tag: u8) -> StoreError {
    StoreError::Corrupt(format!("log record {seq}: unknown {what} tag {tag}"))
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Lengths are bounded by BATCH_EVENTS_MAX and the body limit, far below 2^32.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    put_len(out, value.len());
    out.extend_from_slice(value.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            put_str(out, text);
        }
    }
}

fn put_opt_i64(out: &mut Vec<u8>, value: Option<i64>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put_i64(out, v);
        }
    }
}

fn put_balances(out: &mut Vec<u8>, balances: &coffer_ledger::Balances) {
    for value in convert::balances_array(balances) {
        put_i64(out, value);
    }
}

fn put_journal(out: &mut Vec<u8>, j: &JournalEntry) {
    put_i64(out, i64::try_from(j.batch).unwrap_or(i64::MAX));
    put_i64(out, j.first_timestamp.as_nanos());
    put_i64(out, j.last_timestamp.as_nanos());
    put_i64(out, i64::try_from(j.event_count).unwrap_or(i64::MAX));
    out.extend_from_slice(&j.previous_hash);
    out.extend_from_slice(&j.hash);
}

fn put_account(out: &mut Vec<u8>, a: &Account) {
    put_str(out, a.spec.id.as_str());
    put_str(out, a.spec.currency.as_str());
    put_str(out, a.spec.kind.as_str());
    put_str(out, a.spec.constraint.as_str());
    put_str(out, a.spec.owner.as_str());
    put_str(out, convert::status_str(a.status));
    put_balances(out, &a.balances);
    put_i64(out, a.opened_at.as_nanos());
    put_opt_i64(out, a.closed_at.map(Timestamp::as_nanos));
}

fn put_transfer(out: &mut Vec<u8>, t: &Transfer) {
    put_i64(out, t.timestamp.as_nanos());
    put_str(out, t.id.as_str());
    put_str(out, t.kind.as_str());
    put_str(out, t.debit.as_str());
    put_str(out, t.credit.as_str());
    put_i64(out, t.amount.minor_units());
    put_str(out, t.currency.as_str());
    put_str(out, t.code.as_str());
    put_opt_str(out, convert::metadata_json(&t.metadata).as_deref());
    put_opt_str(out, t.hold.as_ref().map(|h| h.as_str()));
    put_opt_i64(out, t.expires_at.map(Timestamp::as_nanos));
    put_balances(out, &t.debit_after);
    put_balances(out, &t.credit_after);
}

fn put_hold(out: &mut Vec<u8>, h: &Hold) {
    put_str(out, h.id.as_str());
    put_str(out, h.debit.as_str());
    put_str(out, h.credit.as_str());
    put_i64(out, h.amount.minor_units());
    put_str(out, h.currency.as_str());
    put_i64(out, h.expires_at.as_nanos());
    put_str(out, h.state.as_str());
    put_opt_str(out, h.resolved_by.as_ref().map(|r| r.as_str()));
    put_opt_i64(out, h.captured.map(|a| a.minor_units()));
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| StoreError::Corrupt("log record is truncated".into()))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn len(&mut self) -> Result<usize, StoreError> {
        let raw: [u8; 4] = self.take(4)?.try_into().map_err(|_| truncated())?;
        Ok(u32::from_le_bytes(raw) as usize)
    }

    fn i64(&mut self) -> Result<i64, StoreError> {
        let raw: [u8; 8] = self.take(8)?.try_into().map_err(|_| truncated())?;
        Ok(i64::from_le_bytes(raw))
    }

    fn str(&mut self) -> Result<&'a str, StoreError> {
        let len = self.len()?;
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| StoreError::Corrupt("log record holds invalid UTF-8".into()))
    }

    fn string(&mut self) -> Result<String, StoreError> {
        self.str().map(str::to_string)
    }

    fn flag(&mut self) -> Result<bool, StoreError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(StoreError::Corrupt("log record holds a bad flag".into())),
        }
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, StoreError> {
        if self.flag()? {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_i64(&mut self) -> Result<Option<i64>, StoreError> {
        if self.flag()? {
            self.i64().map(Some)
        } else {
            Ok(None)
        }
    }

    fn balances(&mut self) -> Result<[i64; 4], StoreError> {
        Ok([self.i64()?, self.i64()?, self.i64()?, self.i64()?])
    }

    fn journal(&mut self) -> Result<JournalEntry, StoreError> {
        let (batch, first, last, count) = (self.i64()?, self.i64()?, self.i64()?, self.i64()?);
        let previous = self.take(32)?;
        let hash = self.take(32)?;
        convert::journal_entry(batch, first, last, count, previous, hash)
    }

    fn account(&mut self) -> Result<Account, StoreError> {
        AccountRow {
            id: self.str()?,
            currency: self.str()?,
            kind: self.str()?,
            constraint: self.str()?,
            owner: self.str()?,
            status: self.str()?,
            balances: self.balances()?,
            opened_at: self.i64()?,
            closed_at: self.opt_i64()?,
        }
        .into_account()
    }

    fn transfer(&mut self) -> Result<Transfer, StoreError> {
        TransferRow {
            timestamp: self.i64()?,
            id: self.str()?,
            kind: self.str()?,
            debit: self.str()?,
            credit: self.str()?,
            amount: self.i64()?,
            currency: self.str()?,
            code: self.str()?,
            metadata: self.opt_str()?,
            hold: self.opt_str()?,
            expires_at: self.opt_i64()?,
            debit_after: self.balances()?,
            credit_after: self.balances()?,
        }
        .into_transfer()
    }

    fn hold(&mut self) -> Result<Hold, StoreError> {
        HoldRow {
            id: self.str()?,
            debit: self.str()?,
            credit: self.str()?,
            amount: self.i64()?,
            currency: self.str()?,
            expires_at: self.i64()?,
            state: self.str()?,
            resolved_by: self.opt_str()?,
            captured: self.opt_i64()?,
        }
        .into_hold()
    }
}

fn truncated() -> StoreError {
    StoreError::Corrupt("log record is truncated".into())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use coffer_core::{Amount, Code, Currency, Identifier, Timestamp};
    use coffer_ledger::{
        AccountKind, AccountSpec, BalanceConstraint, Command, Known, Ledger, Metadata,
        TransferCommand, TransferOp,
    };

    use super::*;

    fn id(text: &str) -> Identifier {
        Identifier::parse(text).expect("id")
    }

    fn open(account: &str, kind: AccountKind, constraint: BalanceConstraint) -> Command {
        Command::OpenAccount(AccountSpec {
            id: id(account),
            currency: Currency::parse("CNY").expect("CNY"),
            kind,
            constraint,
            owner: id("owner-1"),
        })
    }

    fn transfer(transfer_id: &str, op: TransferOp, metadata: &[(&str, &str)]) -> TransferCommand {
        let map: BTreeMap<String, String> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TransferCommand {
            id: id(transfer_id),
            op,
            code: Code::parse("payment").expect("code"),
            metadata: Metadata::new(map).expect("metadata"),
        }
    }

    fn post(debit: &str, credit: &str, minor: i64) -> TransferOp {
        TransferOp::Post {
            debit: id(debit),
            credit: id(credit),
            amount: Amount::new(minor).expect("amount"),
            currency: Currency::parse("CNY").expect("CNY"),
        }
    }

    /// Every kind of event, hold change and response survives the log intact.
    #[test]
    fn a_record_decodes_to_exactly_what_was_encoded() {
        let now = Timestamp::from_nanos(1_800_000_000_000_000_000);
        let mut ledger = Ledger::default();
        let known = Known::default();
        let commands = vec![
            open("bank", AccountKind::Asset, BalanceConstraint::None),
            open(
                "alice",
                AccountKind::Liability,
                BalanceConstraint::NoOverdraft,
            ),
            open(
                "bob",
                AccountKind::Liability,
                BalanceConstraint::NoOverdraft,
            ),
            open(
                "shut",
                AccountKind::Liability,
                BalanceConstraint::NoOverdraft,
            ),
            Command::CloseAccount(id("shut")),
            Command::Transfers {
                transfers: vec![
                    transfer("fund", post("bank", "alice", 10_000), &[]),
                    transfer(
                        "pay",
                        post("alice", "bob", 2_500),
                        &[("order", "A-1"), ("note", "早餐 ☕")],
                    ),
                    transfer(
                        "h1",
                        TransferOp::Hold {
                            debit: id("alice"),
                            credit: id("bob"),
                            amount: Amount::new(700).expect("amount"),
                            currency: Currency::parse("CNY").expect("CNY"),
                            timeout_ms: 60_000,
                        },
                        &[],
                    ),
                    transfer(
                        "c1",
                        TransferOp::Capture {
                            hold: id("h1"),
                            amount: Some(Amount::new(300).expect("amount")),
                        },
                        &[],
                    ),
                    transfer(
                        "h2",
                        TransferOp::Hold {
                            debit: id("alice"),
                            credit: id("bob"),
                            amount: Amount::new(50).expect("amount"),
                            currency: Currency::parse("CNY").expect("CNY"),
                            timeout_ms: 1_000,
                        },
                        &[],
                    ),
                ],
                linked: true,
            },
        ];
        for command in &commands {
            ledger.execute(command, now, &known);
        }
        let batch = ledger.seal().expect("a batch");
        assert!(batch.hold_changes.len() >= 3, "{:?}", batch.hold_changes);
        let entry = LogEntry {
            seq: 42,
            batch: Some(batch),
            responses: vec![StoredResponse {
                principal: "partner-1".into(),
                key: "k-1".into(),
                request_hash: "abc".into(),
                status: 201,
                body: "{\"id\":\"pay\"}".into(),
                created_at: 7,
            }],
        };
        let bytes = encode(&entry);
        let decoded = decode(42, &bytes).expect("decodes");
        let (original, back) = (
            entry.batch.as_ref().expect("batch"),
            decoded.batch.as_ref().expect("batch"),
        );
        assert_eq!(back.events, original.events);
        assert_eq!(back.accounts, original.accounts);
        assert_eq!(back.hold_changes, original.hold_changes);
        assert_eq!(back.journal, original.journal);
        assert_eq!(decoded.responses, entry.responses);
        assert_eq!(decoded.seq, 42);

        // A responses-only record (requests the ledger refused).
        let refusal = LogEntry {
            seq: 43,
            batch: None,
            responses: entry.responses.clone(),
        };
        let decoded = decode(43, &encode(&refusal)).expect("decodes");
        assert!(decoded.batch.is_none());
        assert_eq!(decoded.responses, refusal.responses);
    }

    /// A damaged record is refused, never half-applied.
    #[test]
    fn a_truncated_or_altered_record_is_corrupt() {
        let entry = LogEntry {
            seq: 1,
            batch: None,
            responses: vec![StoredResponse {
                principal: "p".into(),
                key: "k".into(),
                request_hash: "h".into(),
                status: 200,
                body: "{}".into(),
                created_at: 1,
            }],
        };
        let bytes = encode(&entry);
        for cut in 0..bytes.len() {
            assert!(
                matches!(decode(1, &bytes[..cut]), Err(StoreError::Corrupt(_))),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(1, &longer), Err(StoreError::Corrupt(_))));
        let mut other_version = bytes;
        other_version[0] = 9;
        assert!(matches!(
            decode(1, &other_version),
            Err(StoreError::Corrupt(_))
        ));
    }
}
