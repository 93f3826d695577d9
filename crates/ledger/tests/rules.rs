//! Every rule and every rejection, table-driven, against the pure ledger.
//! Each case starts from the same books (see `books`) and runs one command.

use coffer_core::Timestamp;
use coffer_ledger::{AccountKind, BalanceConstraint, Command, Known, Ledger, Outcome, TransferOp};
use coffer_testkit::*;

const NOW: Timestamp = Timestamp::from_nanos(1_800_000_000_000_000_000);

/// bank (asset, unconstrained), alice and bob (no_overdraft wallets; alice
/// holds 1,000), loan (must stay in debit), usd (a USD wallet), shut (closed),
/// and a pending hold `h` of 300 from alice to bob, expiring in 60 s, and a
/// hold `gone` already released.
/// Returns the ledger and what the engine would load from storage for a
/// later batch: the committed transfers and the resolved holds.
fn books() -> (Ledger, Known) {
    let mut ledger = Ledger::default();
    let mut committed = Known::default();
    let known = Known::default();
    let setup = vec![
        bank("bank"),
        wallet("alice"),
        wallet("bob"),
        Command::OpenAccount(spec(
            "loan",
            "CNY",
            AccountKind::Asset,
            BalanceConstraint::MustStayInDebit,
        )),
        Command::OpenAccount(spec(
            "usd",
            "USD",
            AccountKind::Liability,
            BalanceConstraint::NoOverdraft,
        )),
        wallet("shut"),
        Command::CloseAccount(id("shut")),
        single(post("fund", "bank", "alice", 1_000)),
        single(hold("h", "alice", "bob", 300, 60_000)),
        single(hold("gone", "bank", "bob", 5, 60_000)),
        single(release("gone-release", "gone")),
    ];
    for command in setup {
        match ledger.execute(&command, NOW, &known) {
            Outcome::Account(Err(r)) => panic!("setup {command:?}: {r:?}"),
            Outcome::Transfers(results) if results.iter().any(|r| r.is_err()) => {
                panic!("setup {command:?}: {results:?}")
            }
            _ => {}
        }
        let batch = ledger.seal().expect("setup writes");
        for event in &batch.events {
            if let coffer_ledger::Event::Transfer(t) = event {
                committed.transfers.insert(t.id.clone(), t.clone());
            }
        }
        for change in &batch.hold_changes {
            if let coffer_ledger::HoldChange::Resolved(h) = change {
                committed.holds.insert(h.id.clone(), h.clone());
            }
        }
        ledger.confirm(&batch.journal);
    }
    (ledger, committed)
}

fn outcome_code(outcome: &Outcome) -> Vec<&'static str> {
    match outcome {
        Outcome::Account(Ok(_)) => vec!["ok"],
        Outcome::Account(Err(r)) => vec![r.code()],
        Outcome::Transfers(results) => results
            .iter()
            .map(|r| r.as_ref().map_or_else(|e| e.code(), |_| "ok"))
            .collect(),
    }
}

#[test]
fn every_rule_and_rejection() {
    let usd_post = transfer(
        "x",
        TransferOp::Post {
            debit: id("bank"),
            credit: id("alice"),
            amount: amount(1),
            currency: currency("USD"),
        },
    );
    let cases: Vec<(&str, Command, Vec<&str>)> = vec![
        (
            "a transfer within funds posts",
            single(post("x", "alice", "bob", 700)),
            vec!["ok"],
        ),
        (
            "available counts holds: 1,000 - 300 held",
            single(post("x", "alice", "bob", 701)),
            vec!["insufficient_funds"],
        ),
        (
            "same id, same fields replays",
            single(post("fund", "bank", "alice", 1_000)),
            vec!["ok"],
        ),
        (
            "same id, other fields",
            single(post("fund", "bank", "alice", 999)),
            vec!["exists_with_different_fields"],
        ),
        (
            "same account",
            single(post("x", "alice", "alice", 1)),
            vec!["same_account"],
        ),
        (
            "hold timeout zero",
            single(hold("x", "alice", "bob", 1, 0)),
            vec!["invalid_timeout"],
        ),
        (
            "hold timeout over 30 days",
            single(hold("x", "alice", "bob", 1, 31 * 24 * 3600 * 1000)),
            vec!["invalid_timeout"],
        ),
        (
            "debit account missing",
            single(post("x", "nobody", "bob", 1)),
            vec!["account_not_found"],
        ),
        (
            "credit account missing",
            single(post("x", "alice", "nobody", 1)),
            vec!["account_not_found"],
        ),
        (
            "debit currency differs from the transfer",
            single(usd_post),
            vec!["currency_mismatch"],
        ),
        (
            "credit currency differs",
            single(post("x", "alice", "usd", 1)),
            vec!["currency_mismatch"],
        ),
        (
            "debit account closed",
            single(post("x", "shut", "bob", 1)),
            vec!["account_closed"],
        ),
        (
            "credit account closed",
            single(post("x", "alice", "shut", 1)),
            vec!["account_closed"],
        ),
        (
            "capture an unknown hold",
            single(capture("x", "nope", None)),
            vec!["hold_not_found"],
        ),
        (
            "capture a released hold",
            single(capture("x", "gone", None)),
            vec!["hold_not_pending"],
        ),
        (
            "capture more than held",
            single(capture("x", "h", Some(301))),
            vec!["capture_exceeds_hold"],
        ),
        (
            "capture part of a hold",
            single(capture("x", "h", Some(100))),
            vec!["ok"],
        ),
        (
            "capture all of a hold",
            single(capture("x", "h", None)),
            vec!["ok"],
        ),
        ("release a hold", single(release("x", "h")), vec!["ok"]),
        (
            "overflow on the credit side",
            single(post("x", "bank", "bob", i64::MAX)),
            vec!["overflow"],
        ),
        (
            "must-stay-in-debit account cannot go into credit",
            single(post("x", "alice", "loan", 1)),
            vec!["exceeds_debits"],
        ),
        (
            "must-stay-in-debit account may go further into debit",
            single(post("x", "loan", "bob", 5)),
            vec!["ok"],
        ),
        (
            "an unconstrained account may go negative",
            single(post("x", "bank", "bob", 5_000)),
            vec!["ok"],
        ),
        (
            "a linked batch fails as a whole, naming the member at fault",
            linked(vec![
                post("x", "alice", "bob", 600),
                post("y", "alice", "bob", 200),
            ]),
            vec!["linked_transfer_failed", "insufficient_funds"],
        ),
        (
            "a linked batch that fits posts every member",
            linked(vec![
                post("x", "alice", "bob", 600),
                post("y", "bob", "alice", 200),
            ]),
            vec!["ok", "ok"],
        ),
        (
            "a linked batch partly committed before",
            linked(vec![
                post("fund", "bank", "alice", 1_000),
                post("y", "alice", "bob", 1),
            ]),
            vec!["linked_batch_partially_exists", "linked_transfer_failed"],
        ),
        (
            "unlinked transfers stand alone",
            Command::Transfers {
                transfers: vec![
                    post("x", "alice", "bob", 800),
                    post("y", "alice", "bob", 100),
                ],
                linked: false,
            },
            vec!["insufficient_funds", "ok"],
        ),
        ("an account opens once", wallet("carol"), vec!["ok"]),
        (
            "re-opening with the same spec replays",
            wallet("alice"),
            vec!["ok"],
        ),
        (
            "re-opening with another spec",
            bank("alice"),
            vec!["exists_with_different_fields"],
        ),
        (
            "closing a non-empty account",
            Command::CloseAccount(id("alice")),
            vec!["account_not_empty"],
        ),
        (
            "closing a closed account",
            Command::CloseAccount(id("shut")),
            vec!["account_closed"],
        ),
        (
            "closing an unknown account",
            Command::CloseAccount(id("nobody")),
            vec!["account_not_found"],
        ),
    ];
    for (name, command, expected) in cases {
        let (mut ledger, known) = books();
        let outcome = ledger.execute(&command, NOW.next(), &known);
        assert_eq!(outcome_code(&outcome), expected, "{name}");
    }
}

#[test]
fn checks_run_in_the_documented_order() {
    // Several faults at once: the earliest check in the documented order wins.
    let cases: Vec<(&str, Command, &str)> = vec![
        (
            "id reuse beats same account",
            single(post("fund", "alice", "alice", 1)),
            "exists_with_different_fields",
        ),
        (
            "same account beats missing account",
            single(post("x", "nobody", "nobody", 1)),
            "same_account",
        ),
        (
            "missing beats currency",
            single(post("x", "nobody", "usd", 1)),
            "account_not_found",
        ),
        (
            "currency beats closed",
            single(post("x", "shut", "usd", 1)),
            "currency_mismatch",
        ),
        (
            "closed beats insufficient funds",
            single(post("x", "shut", "bob", 1_000_000)),
            "account_closed",
        ),
    ];
    for (name, command, expected) in cases {
        let (mut ledger, known) = books();
        assert_eq!(
            outcome_code(&ledger.execute(&command, NOW.next(), &known)),
            vec![expected],
            "{name}"
        );
    }
}

#[test]
fn balances_move_exactly() {
    let (mut ledger, known) = books();
    let Outcome::Transfers(results) =
        ledger.execute(&single(capture("c", "h", Some(120))), NOW.next(), &known)
    else {
        panic!()
    };
    let (transfer, created) = results[0].clone().expect("capture");
    assert!(created);
    // 300 held → 120 posted, 180 released; alice had 1,000 posted in.
    assert_eq!(transfer.debit_after.debits_posted, 120);
    assert_eq!(transfer.debit_after.debits_pending, 0);
    assert_eq!(transfer.credit_after.credits_posted, 120);
    let alice = ledger.account(&id("alice")).expect("alice");
    assert_eq!(alice.available(), 880);
    assert_eq!(alice.posted(), 880);
}

#[test]
fn holds_expire_on_time_and_a_failed_batch_rolls_back() {
    let (mut ledger, known) = books();
    assert_eq!(ledger.expire_due(NOW.plus_millis(59_999), 100), 0);
    assert_eq!(ledger.expire_due(NOW.plus_millis(60_001), 100), 1);
    assert_eq!(
        ledger.account(&id("alice")).expect("alice").available(),
        1_000
    );
    ledger.rollback();
    assert_eq!(
        ledger.account(&id("alice")).expect("alice").available(),
        700,
        "rollback restores the hold"
    );
    assert!(ledger.pending_hold(&id("h")).is_some());
    let later = NOW.plus_millis(60_001);
    assert_eq!(
        outcome_code(&ledger.execute(&single(capture("c", "h", None)), later, &known)),
        vec!["hold_expired"]
    );
}
