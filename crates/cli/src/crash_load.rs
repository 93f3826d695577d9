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
    /// Clients that submit batches of `BATCH` transfers beside them (large
    /// batches take the writer's other path: indexed while the log syncs).
    #[arg(long, default_value_t = 1)]
    batch_clients: usize,
    /// Resubmit every acknowledged id instead of generating load.
    #[arg(long)]
    replay: bool,
}

const WALLETS: usize = 50;
/// Transfers per batch-client request: above the size from which the writer
/// stages the batch in the overlay while the log appends it.
const BATCH: usize = 1_500;
/// Acknowledged ids resubmitted per command by `--replay`.
const REPLAY_CHUNK: usize = 1_000;

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

/// Whether each of `expected` transfers was created (`false`: an earlier
/// commit's, replayed).
fn posted(outcome: Outcome, expected: usize) -> anyhow::Result<Vec<bool>> {
    match outcome {
        Outcome::Transfers(results) if results.len() == expected => results
            .into_iter()
            .map(|result| match result {
                Ok((_, created)) => Ok(created),
                Err(rejection) => bail!("refused: {}", rejection.code()),
            })
            .collect(),
        other => bail!("unexpected outcome {other:?}"),
    }
}

fn submit(engine: &Engine, ids: &[String]) -> anyhow::Result<Vec<bool>> {
    let transfers = ids
        .iter()
        .map(|id| command_for(id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    posted(
        engine.execute_blocking(Command::Transfers {
            transfers,
            linked: false,
        })?,
        ids.len(),
    )
}

/// The ids in the acknowledgement log: complete lines (`id;`) only.
fn acknowledged(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(path)?;
    let mut ids = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        if let Some(id) = line?.strip_suffix(';') {
            ids.push(id.to_string());
        }
    }
    Ok(ids)
}

fn ends_with_newline(file: &mut std::fs::File) -> anyhow::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

pub fn run(args: CrashLoad) -> anyhow::Result<()> {
    let database = Database::parse(&args.db)?;
    let engine = Arc::new(Engine::start(&database, coffer_app::system_clock())?);
    if args.replay {
        let ids = acknowledged(&args.ack_log)?;
        let mut checked = 0;
        for chunk in ids.chunks(REPLAY_CHUNK) {
            let created = submit(&engine, chunk)?;
            if let Some((id, _)) = chunk.iter().zip(created).find(|(_, created)| *created) {
                bail!("acknowledged transfer {id} was not in the ledger after the crash");
            }
            checked += chunk.len();
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
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&args.ack_log)?;
    // A kill can cut a write short at a page boundary: start on a line of
    // our own, so a cut line (which has no `;`) is never glued to ours.
    if !ends_with_newline(&mut file)? {
        file.write_all(b"\n")?;
    }
    let log = Arc::new(Mutex::new(file));
    let run = format!("r{}", std::process::id());
    println!("loading");
    std::thread::scope(|scope| {
        for client in 0..args.clients + args.batch_clients {
            let (engine, log, run) = (engine.clone(), log.clone(), run.clone());
            let size = if client < args.clients { 1 } else { BATCH };
            scope.spawn(move || -> anyhow::Result<()> {
                for step in 0.. {
                    let ids: Vec<String> = (step * size..(step + 1) * size)
                        .map(|n| format!("{run}-{client}-{n}"))
                        .collect();
                    submit(&engine, &ids)?;
                    // Written only after the engine acknowledged the batch,
                    // in one write(2) (`writeln!` would issue an id and its
                    // newline as two). Each id ends with `;`: a write that a
                    // kill cuts short leaves a line without one, ignored.
                    let lines: String = ids.iter().map(|id| format!("{id};\n")).collect();
                    let mut file = log.lock().unwrap_or_else(|e| e.into_inner());
                    file.write_all(lines.as_bytes())?;
                }
                Ok(())
            });
        }
    });
    Ok(())
}
