//! Key rotation must reach every encrypted value: the columns the crates
//! list for `coffer keys reencrypt` are exactly the `_enc` columns of the
//! schema (both dialects), so a new encrypted column cannot be forgotten.

use std::collections::BTreeSet;

/// (table, column) of every `…_enc` column the migrations of one dialect create.
fn schema_columns(dialect: &str) -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../store/src/migrations");
    let mut columns: BTreeSet<(String, String)> = BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("migrations")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{dialect}_")))
        })
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let mut table = String::new();
        for line in text.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["CREATE", "TABLE", name, ..] => table = name.trim_end_matches('(').to_string(),
                // A table rebuilt under a new name (SQLite cannot drop a
                // constraint) keeps its columns under the final name.
                ["ALTER", "TABLE", from, "RENAME", "TO", to] => {
                    let to = to.trim_end_matches(';');
                    let moved: Vec<_> =
                        columns.iter().filter(|(t, _)| t == from).cloned().collect();
                    for (t, column) in moved {
                        columns.remove(&(t, column.clone()));
                        columns.insert((to.to_string(), column));
                    }
                }
                ["ALTER", "TABLE", name, "ADD", "COLUMN", column, ..]
                    if column.ends_with("_enc") =>
                {
                    columns.insert((name.to_string(), column.to_string()));
                }
                [column, ..] if column.ends_with("_enc") => {
                    columns.insert((table.clone(), column.to_string()));
                }
                _ => {}
            }
        }
    }
    columns
}

#[test]
fn every_encrypted_column_of_the_schema_is_reencrypted_after_a_rotation() {
    let listed: BTreeSet<(String, String)> = coffer_api::encrypted_columns()
        .iter()
        .map(|c| (c.table.to_string(), c.column.to_string()))
        .collect();
    assert_eq!(
        listed.len(),
        coffer_api::encrypted_columns().len(),
        "a column is listed twice"
    );
    for dialect in ["sqlite", "postgres"] {
        let schema = schema_columns(dialect);
        assert!(schema.contains(&("cards".into(), "pan_enc".into())));
        assert_eq!(listed, schema, "{dialect}");
    }
}
