//! `coffer verify`: re-derives every balance, hold and journal hash from the
//! stored rows alone and reports anything that does not add up.

use coffer_ledger::{AuditReport, Auditor};
use coffer_store::{LedgerReader, StoreError};

/// Audits the whole ledger. `progress` is called with the number of transfers
/// checked so far, every 10,000.
pub fn verify(
    reader: &dyn LedgerReader,
    progress: &mut dyn FnMut(u64),
) -> Result<AuditReport, StoreError> {
    let mut auditor = Auditor::new(reader.audit_input()?);
    let mut seen = 0u64;
    reader.scan_transfers(&mut |transfer| {
        auditor.feed(&transfer);
        seen += 1;
        if seen.is_multiple_of(10_000) {
            progress(seen);
        }
    })?;
    progress(seen);
    Ok(auditor.finish())
}
