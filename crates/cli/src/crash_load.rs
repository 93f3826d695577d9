//! `coffer bench crash-load`: concurrent load for the crash test. Clients post
//! transfers whose fields follow from their id, and append each id to an
//! acknowledgement log once the engine has answered. The test kills this
//! process with SIGKILL at random moments; `--replay` then resubmits every
//! acknowledged id and fails if any of them is not already in the ledger.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use clap::Args;
use coffer_app::Engine;
use coffer_core::{Amount, Code, Currency, Identifier};
use coffer_ledger::{
    AccountKind, AccountSpec, BalanceConstraint, Command, Metadata, Outcome, TransferCommand,
    TransferOp,
};
use coffer_store::Database;

#[derive(Debug, Args)]
pub struct CrashLoad {
    #[arg(long)]
    db: String,
    /// Where acknowledged transfer ids are appended, one per line.
    #[arg(long)]
    ack_log: PathBuf,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Resubmit every acknowledged id instead of generating load.
    #[arg(long)]
    replay: bool,
}

const WALLETS: usize = 50;

fn ident(text: &str) -> anyhow::Result<Identifier> {
    Identifier::parse(text).with_context(|| format!("id {text}"))
}

/// The transfer a given id stands for (`{run}-{client}-{n}`).
fn command_for(id: &str) -> anyhow::Result<TransferCommand> {
    let mut parts = id.rsplitn(3, '-');
    let n: usize = parts.next().context("id")?.parse()?;
    let client: usize = parts.next().context("id")?.parse()?;
    let debit = (client * 7 + n) % WALLETS;
    let credit = (debit + 1 + (n % (WALLETS - 1))) % WALLETS;
    Ok(TransferCommand {
        id: ident(id)?,
        op: TransferOp::Post {
            debit: ident(&format!("wallet-{debit}"))?,
            credit: ident(&format!("wallet-{credit}"))?,
            amount: Amount::new(1 + (n % 50) as i64)?,
            currency: Currency::parse("CNY")?,
        },
        code: Code::parse("crash-test")?,
        metadata: Metadata::default(),
    })
}

fn posted(outcome: Outcome) -> anyhow::Result<bool> {
    match outcome {
        Outcome::Transfers(mut results) if results.len() == 1 => match results.remove(0) {
            Ok((_, created)) => Ok(created),
            Err(rejection) => bail!("refused: {}", rejection.code()),
        },
        other => bail!("unexpected outcome {other:?}"),
    }
}

pub fn run(args: CrashLoad) -> anyhow::Result<()> {
    let database = Database::parse(&args.db)?;
    let engine = Arc::new(Engine::start(&database, coffer_app::system_clock())?);
    if args.replay {
        let file = std::fs::File::open(&args.ack_log)?;
        let mut checked = 0;
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            let command = command_for(&line)?;
            if posted(engine.execute_blocking(Command::Transfers {
                transfers: vec![command],
                linked: false,
            })?)? {
                bail!("acknowledged transfer {line} was not in the ledger after the crash");
            }
            checked += 1;
        }
        engine.shutdown();
        println!("replayed {checked} acknowledged transfers: all present, none applied twice");
        return Ok(());
    }
    let owner = ident("crash-test")?;
    let cny = Currency::parse("CNY")?;
    let open = |id: &str, kind, constraint| -> anyhow::Result<()> {
        let spec = AccountSpec {
            id: ident(id)?,
            currency: cny,
            kind,
            constraint,
            owner: owner.clone(),
        };
        match engine.execute_blocking(Command::OpenAccount(spec))? {
            Outcome::Account(Ok(_)) => Ok(()),
            other => bail!("open {id}: {other:?}"),
        }
    };
    open("bank", AccountKind::Asset, BalanceConstraint::None)?;
    for w in 0..WALLETS {
        open(
            &format!("wallet-{w}"),
            AccountKind::Liability,
            BalanceConstraint::NoOverdraft,
        )?;
        let funding = TransferCommand {
            id: ident(&format!("fund-{w}"))?,
            op: TransferOp::Post {
                debit: ident("bank")?,
                credit: ident(&format!("wallet-{w}"))?,
                amount: Amount::new(1_000_000_000)?,
                currency: cny,
            },
            code: Code::parse("funding")?,
            metadata: Metadata::default(),
        };
        engine.execute_blocking(Command::Transfers {
            transfers: vec![funding],
            linked: false,
        })?;
    }
    let log = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.ack_log)?,
    ));
    let run = format!("r{}", std::process::id());
    println!("loading");
    std::thread::scope(|scope| {
        for client in 0..args.clients {
            let (engine, log, run) = (engine.clone(), log.clone(), run.clone());
            scope.spawn(move || -> anyhow::Result<()> {
                for n in 0.. {
                    let id = format!("{run}-{client}-{n}");
                    let command = command_for(&id)?;
                    posted(engine.execute_blocking(Command::Transfers {
                        transfers: vec![command],
                        linked: false,
                    })?)?;
                    // Written only after the engine acknowledged the transfer,
                    // in one write(2): `writeln!` issues the id and the newline
                    // as two writes, and a kill between them glued this id to
                    // the next run's first one.
                    let line = format!("{id}\n");
                    let mut file = log.lock().unwrap_or_else(|e| e.into_inner());
                    file.write_all(line.as_bytes())?;
                }
                Ok(())
            });
        }
    });
    Ok(())
}
