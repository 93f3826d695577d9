//! Accounts and their balances.

use coffer_core::{Currency, Identifier, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKind {
    Asset,
    Liability,
    Equity,
    Income,
    Expense,
}

impl AccountKind {
    pub const ALL: [AccountKind; 5] = [
        AccountKind::Asset,
        AccountKind::Liability,
        AccountKind::Equity,
        AccountKind::Income,
        AccountKind::Expense,
    ];

    /// The side on which the account's balance normally stands: a customer
    /// wallet is a liability of the bank, so it grows with credits.
    pub fn normal_side(self) -> Side {
        match self {
            AccountKind::Asset | AccountKind::Expense => Side::Debit,
            AccountKind::Liability | AccountKind::Equity | AccountKind::Income => Side::Credit,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Asset => "asset",
            AccountKind::Liability => "liability",
            AccountKind::Equity => "equity",
            AccountKind::Income => "income",
            AccountKind::Expense => "expense",
        }
    }

    pub fn parse(text: &str) -> Option<AccountKind> {
        AccountKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Debit,
    Credit,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Debit => "debit",
            Side::Credit => "credit",
        }
    }
}

/// Which way an account's balance may never go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BalanceConstraint {
    None,
    /// Debits (posted and pending) must not exceed posted credits: a customer
    /// wallet cannot be overdrawn, and a hold reserves funds at once.
    NoOverdraft,
    /// The mirror: credits (posted and pending) must not exceed posted debits,
    /// for accounts that must stay in debit (e.g. a settlement asset).
    MustStayInDebit,
}

impl BalanceConstraint {
    pub const ALL: [BalanceConstraint; 3] = [
        BalanceConstraint::None,
        BalanceConstraint::NoOverdraft,
        BalanceConstraint::MustStayInDebit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BalanceConstraint::None => "none",
            BalanceConstraint::NoOverdraft => "no_overdraft",
            BalanceConstraint::MustStayInDebit => "must_stay_in_debit",
        }
    }

    pub fn parse(text: &str) -> Option<BalanceConstraint> {
        BalanceConstraint::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountStatus {
    Open,
    Closed,
}

/// The four running totals of an account, each a sum of positive amounts, so
/// each is non-negative and fits `i64` (an add that would not is `overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Balances {
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
}

impl Balances {
    /// Posted balance on the account's normal side (negative when it stands on
    /// the other side). Exact: computed in `i128`, then saturated for display.
    pub fn posted(&self, side: Side) -> i64 {
        let (plus, minus) = match side {
            Side::Credit => (self.credits_posted, self.debits_posted),
            Side::Debit => (self.debits_posted, self.credits_posted),
        };
        saturate(i128::from(plus) - i128::from(minus))
    }

    /// What can still be spent: posted balance less pending outgoing holds.
    pub fn available(&self, side: Side) -> i64 {
        let (plus, minus, held) = match side {
            Side::Credit => (self.credits_posted, self.debits_posted, self.debits_pending),
            Side::Debit => (
                self.debits_posted,
                self.credits_posted,
                self.credits_pending,
            ),
        };
        saturate(i128::from(plus) - i128::from(minus) - i128::from(held))
    }

    /// Whether these totals satisfy the constraint.
    pub fn satisfies(&self, constraint: BalanceConstraint) -> bool {
        match constraint {
            BalanceConstraint::None => true,
            BalanceConstraint::NoOverdraft => {
                i128::from(self.debits_posted) + i128::from(self.debits_pending)
                    <= i128::from(self.credits_posted)
            }
            BalanceConstraint::MustStayInDebit => {
                i128::from(self.credits_posted) + i128::from(self.credits_pending)
                    <= i128::from(self.debits_posted)
            }
        }
    }
}

fn saturate(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// What a client asks for when opening an account. Opening is idempotent on
/// `id`: the same spec again returns the account; a different one is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSpec {
    pub id: Identifier,
    pub currency: Currency,
    pub kind: AccountKind,
    pub constraint: BalanceConstraint,
    /// Who the account belongs to in the systems above (`customer:42`,
    /// `merchant:7`, `bank:fees`). Opaque to the ledger.
    pub owner: Identifier,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub spec: AccountSpec,
    pub status: AccountStatus,
    pub balances: Balances,
    pub opened_at: Timestamp,
    pub closed_at: Option<Timestamp>,
}

impl Account {
    pub fn id(&self) -> &Identifier {
        &self.spec.id
    }

    pub fn posted(&self) -> i64 {
        self.balances.posted(self.spec.kind.normal_side())
    }

    pub fn available(&self) -> i64 {
        self.balances.available(self.spec.kind.normal_side())
    }
}
