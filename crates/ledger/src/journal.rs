//! The tamper-evident journal: every committed batch is one entry whose SHA-256
//! covers the previous entry's hash and the canonical bytes of the batch's
//! events. Changing, adding or removing any stored event breaks the chain.

use sha2::{Digest, Sha256};

use coffer_core::Timestamp;

use crate::account::{Account, Balances};
use crate::transfer::Transfer;

pub type JournalHash = [u8; 32];

/// The hash the first entry chains from.
pub const GENESIS_HASH: JournalHash = [0; 32];

const DOMAIN: &[u8] = b"coffer-journal-v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// 1, 2, 3… with no gaps.
    pub batch: u64,
    pub first_timestamp: Timestamp,
    pub last_timestamp: Timestamp,
    pub event_count: u64,
    pub previous_hash: JournalHash,
    pub hash: JournalHash,
}

/// One thing a batch did, in the form that is hashed. Balances of accounts
/// are not events: they are derived from transfers, and `verify` re-derives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AccountOpened(Account),
    AccountClosed { account: Account },
    Transfer(Transfer),
}

impl Event {
    pub fn timestamp(&self) -> Timestamp {
        match self {
            Event::AccountOpened(account) => account.opened_at,
            Event::AccountClosed { account } => account.closed_at.unwrap_or(Timestamp::ZERO),
            Event::Transfer(transfer) => transfer.timestamp,
        }
    }
}

/// Computes a journal entry incrementally, one event at a time, in timestamp order.
pub struct JournalHasher {
    batch: u64,
    previous_hash: JournalHash,
    hasher: Sha256,
    first_timestamp: Option<Timestamp>,
    last_timestamp: Timestamp,
    event_count: u64,
    buffer: Vec<u8>,
}

impl JournalHasher {
    pub fn new(batch: u64, previous_hash: JournalHash) -> JournalHasher {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN);
        hasher.update(previous_hash);
        hasher.update(batch.to_be_bytes());
        JournalHasher {
            batch,
            previous_hash,
            hasher,
            first_timestamp: None,
            last_timestamp: Timestamp::ZERO,
            event_count: 0,
            buffer: Vec::with_capacity(256),
        }
    }

    pub fn push(&mut self, event: &Event) {
        self.buffer.clear();
        encode_event(event, &mut self.buffer);
        self.hasher.update(&self.buffer);
        let timestamp = event.timestamp();
        self.first_timestamp.get_or_insert(timestamp);
        self.last_timestamp = timestamp;
        self.event_count += 1;
    }

    pub fn event_count(&self) -> u64 {
        self.event_count
    }

    pub fn finish(self) -> JournalEntry {
        let mut hasher = self.hasher;
        hasher.update(self.event_count.to_be_bytes());
        JournalEntry {
            batch: self.batch,
            first_timestamp: self.first_timestamp.unwrap_or(Timestamp::ZERO),
            last_timestamp: self.last_timestamp,
            event_count: self.event_count,
            previous_hash: self.previous_hash,
            hash: hasher.finalize().into(),
        }
    }
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
}

fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_balances(out: &mut Vec<u8>, balances: &Balances) {
    put_i64(out, balances.debits_posted);
    put_i64(out, balances.credits_posted);
    put_i64(out, balances.debits_pending);
    put_i64(out, balances.credits_pending);
}

/// The canonical bytes of an event: fixed field order, big-endian integers,
/// length-prefixed strings. Changing this is a new journal version.
fn encode_event(event: &Event, out: &mut Vec<u8>) {
    match event {
        Event::AccountOpened(account) => {
            out.push(0x10);
            put_i64(out, account.opened_at.as_nanos());
            put_str(out, account.spec.id.as_str());
            put_str(out, account.spec.currency.as_str());
            put_str(out, account.spec.kind.as_str());
            put_str(out, account.spec.constraint.as_str());
            put_str(out, account.spec.owner.as_str());
        }
        Event::AccountClosed { account } => {
            out.push(0x11);
            put_i64(out, account.closed_at.unwrap_or(Timestamp::ZERO).as_nanos());
            put_str(out, account.spec.id.as_str());
        }
        Event::Transfer(transfer) => {
            out.push(0x20 | transfer.kind.tag());
            put_i64(out, transfer.timestamp.as_nanos());
            put_str(out, transfer.id.as_str());
            put_str(out, transfer.debit.as_str());
            put_str(out, transfer.credit.as_str());
            put_i64(out, transfer.amount.minor_units());
            put_str(out, transfer.currency.as_str());
            put_str(out, transfer.code.as_str());
            out.extend_from_slice(&(transfer.metadata.entries().len() as u32).to_be_bytes());
            for (key, value) in transfer.metadata.entries() {
                put_str(out, key);
                put_str(out, value);
            }
            put_str(out, transfer.hold.as_ref().map_or("", |h| h.as_str()));
            put_i64(out, transfer.expires_at.map_or(-1, Timestamp::as_nanos));
            put_balances(out, &transfer.debit_after);
            put_balances(out, &transfer.credit_after);
        }
    }
}
