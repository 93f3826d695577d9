//! Watch lists as compliance staff load them: JSON or CSV files of entries
//! (entry id, name, aliases, list source, person or entity, country, date
//! of birth), parsed strictly (every bad row is reported by its position,
//! nothing half-loaded) into one canonical form that is stored per version.

use serde::{Deserialize, Serialize};

use crate::matching::{normalize, NormalizedName};

/// Bounds on what a list may hold.
pub const ENTRIES_MAX: usize = 100_000;
pub const ALIASES_PER_ENTRY_MAX: usize = 50;
pub const NAME_LENGTH_MAX: usize = 200;
pub const ID_LENGTH_MAX: usize = 100;
/// A list file (or request body) is at most this large.
pub const LIST_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Whom an entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Person,
    Entity,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Person => "person",
            EntryKind::Entity => "entity",
        }
    }

    fn parse(text: &str) -> Option<EntryKind> {
        match text {
            "person" => Some(EntryKind::Person),
            "entity" => Some(EntryKind::Entity),
            _ => None,
        }
    }
}

/// One listed party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEntry {
    /// The list's own id for the entry (e.g. `OFAC-12345`).
    pub entry_id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Which list it comes from (`UN`, `OFAC SDN`, `PBOC`, an internal list…).
    pub list_source: String,
    pub kind: EntryKind,
    /// ISO 3166-1 alpha-2.
    #[serde(default)]
    pub country: Option<String>,
    /// `YYYY-MM-DD`, or `YYYY` when only the year is known.
    #[serde(default)]
    pub date_of_birth: Option<String>,
}

/// The file formats a list is loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// `[{entry}, …]` or `{"entries": [{entry}, …]}`.
    Json,
    /// A header row `entry_id,name,aliases,list_source,kind,country,date_of_birth`
    /// (any order; aliases separated by `;`), RFC 4180 quoting.
    Csv,
}

impl ListFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ListFormat::Json => "json",
            ListFormat::Csv => "csv",
        }
    }

    pub fn parse(text: &str) -> Option<ListFormat> {
        match text {
            "json" => Some(ListFormat::Json),
            "csv" => Some(ListFormat::Csv),
            _ => None,
        }
    }

    /// The format a file's name says (`.json`, `.csv`).
    pub fn of_path(path: &std::path::Path) -> Option<ListFormat> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        ListFormat::parse(&extension)
    }
}

/// Why a list was refused; `at` names the entry (1-based) or CSV line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct ListError {
    pub at: String,
    pub message: String,
}

fn refuse(at: impl Into<String>, message: impl Into<String>) -> ListError {
    ListError {
        at: at.into(),
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonList {
    Bare(Vec<ListEntry>),
    Wrapped { entries: Vec<ListEntry> },
}

/// Parses and checks a list; entries come back trimmed, in the file's order.
pub fn parse(format: ListFormat, text: &str) -> Result<Vec<ListEntry>, ListError> {
    if text.len() > LIST_BYTES_MAX {
        return Err(refuse(
            "list",
            format!("larger than {LIST_BYTES_MAX} bytes"),
        ));
    }
    let entries = match format {
        ListFormat::Json => match serde_json::from_str::<JsonList>(text) {
            Ok(JsonList::Bare(entries)) | Ok(JsonList::Wrapped { entries }) => entries,
            Err(error) => return Err(refuse("list", format!("not a JSON watch list: {error}"))),
        },
        ListFormat::Csv => parse_csv(text)?,
    };
    check(entries)
}

fn check(entries: Vec<ListEntry>) -> Result<Vec<ListEntry>, ListError> {
    if entries.is_empty() {
        return Err(refuse("list", "no entries"));
    }
    if entries.len() > ENTRIES_MAX {
        return Err(refuse("list", format!("more than {ENTRIES_MAX} entries")));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let at = format!("entry {}", index + 1);
        let text = |field: &str, value: &str, max: usize| -> Result<String, ListError> {
            let value = value.trim();
            if value.is_empty()
                || value.chars().count() > max
                || value.chars().any(char::is_control)
            {
                return Err(refuse(
                    &at,
                    format!("{field}: 1 to {max} characters, no control characters"),
                ));
            }
            Ok(value.to_string())
        };
        let entry_id = text("entry_id", &entry.entry_id, ID_LENGTH_MAX)?;
        if !seen.insert(entry_id.clone()) {
            return Err(refuse(&at, format!("entry_id {entry_id} appears twice")));
        }
        let name = text("name", &entry.name, NAME_LENGTH_MAX)?;
        if normalize(&name).is_empty() {
            return Err(refuse(&at, "name: no letters to match"));
        }
        if entry.aliases.len() > ALIASES_PER_ENTRY_MAX {
            return Err(refuse(
                &at,
                format!("at most {ALIASES_PER_ENTRY_MAX} aliases"),
            ));
        }
        let aliases = entry
            .aliases
            .iter()
            .filter(|a| !a.trim().is_empty())
            .map(|a| text("aliases", a, NAME_LENGTH_MAX))
            .collect::<Result<Vec<_>, _>>()?;
        let list_source = text("list_source", &entry.list_source, ID_LENGTH_MAX)?;
        let country = match entry
            .country
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            None => None,
            Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) => {
                Some(c.to_string())
            }
            Some(_) => return Err(refuse(&at, "country: an ISO 3166-1 alpha-2 code (CN, GB…)")),
        };
        let date_of_birth = match entry
            .date_of_birth
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            None => None,
            Some(d) if valid_date(d) => Some(d.to_string()),
            Some(_) => return Err(refuse(&at, "date_of_birth: YYYY-MM-DD or YYYY")),
        };
        out.push(ListEntry {
            entry_id,
            name,
            aliases,
            list_source,
            kind: entry.kind,
            country,
            date_of_birth,
        });
    }
    Ok(out)
}

fn valid_date(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = text.split('-').collect();
    match parts.as_slice() {
        [year] => year.len() == 4 && digits(year),
        [year, month, day] => {
            year.len() == 4
                && digits(year)
                && month.len() == 2
                && digits(month)
                && day.len() == 2
                && digits(day)
                && matches!(month.parse::<u32>(), Ok(1..=12))
                && matches!(day.parse::<u32>(), Ok(1..=31))
        }
        _ => false,
    }
}

/// RFC 4180 records: quoted fields may hold commas, quotes (doubled) and
/// line breaks. Returns (first line number, fields) per record.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, ListError> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let (mut line, mut start_line) = (1usize, 1usize);
    let mut quoted = false;
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => fields.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                if fields.iter().any(|f| !f.is_empty()) {
                    records.push((start_line, std::mem::take(&mut fields)));
                }
                fields.clear();
                line += 1;
                start_line = line;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(refuse(
            format!("line {start_line}"),
            "a quoted field is not closed",
        ));
    }
    fields.push(field);
    if fields.iter().any(|f| !f.is_empty()) {
        records.push((start_line, fields));
    }
    Ok(records)
}

const CSV_COLUMNS: [&str; 7] = [
    "entry_id",
    "name",
    "aliases",
    "list_source",
    "kind",
    "country",
    "date_of_birth",
];

fn parse_csv(text: &str) -> Result<Vec<ListEntry>, ListError> {
    let mut records = csv_records(text)?.into_iter();
    let (_, header) = records
        .next()
        .ok_or_else(|| refuse("line 1", "no header row"))?;
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if let Some(unknown) = header.iter().find(|h| !CSV_COLUMNS.contains(&h.as_str())) {
        return Err(refuse("line 1", format!("unknown column {unknown}")));
    }
    let column = |name: &str| header.iter().position(|h| h == name);
    let required =
        |name: &str| column(name).ok_or_else(|| refuse("line 1", format!("missing column {name}")));
    let (id_at, name_at, source_at, kind_at) = (
        required("entry_id")?,
        required("name")?,
        required("list_source")?,
        required("kind")?,
    );
    let (aliases_at, country_at, birth_at) = (
        column("aliases"),
        column("country"),
        column("date_of_birth"),
    );
    let mut entries = Vec::new();
    for (line, fields) in records {
        let at = format!("line {line}");
        if fields.len() != header.len() {
            return Err(refuse(
                &at,
                format!("{} fields, the header has {}", fields.len(), header.len()),
            ));
        }
        let get = |index: usize| fields[index].clone();
        let optional = |index: Option<usize>| index.map(get).filter(|v| !v.trim().is_empty());
        let kind_text = get(kind_at);
        let kind = EntryKind::parse(kind_text.trim())
            .ok_or_else(|| refuse(&at, "kind: person or entity"))?;
        entries.push(ListEntry {
            entry_id: get(id_at),
            name: get(name_at),
            aliases: optional(aliases_at)
                .map(|a| a.split(';').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default(),
            list_source: get(source_at),
            kind,
            country: optional(country_at),
            date_of_birth: optional(birth_at),
        });
    }
    Ok(entries)
}

/// An entry with its names normalised once, for screening.
#[derive(Debug, Clone)]
pub struct PreparedEntry {
    pub entry: ListEntry,
    pub names: Vec<NormalizedName>,
}

impl PreparedEntry {
    pub fn new(entry: ListEntry) -> PreparedEntry {
        let names = std::iter::once(&entry.name)
            .chain(&entry.aliases)
            .map(|n| normalize(n))
            .filter(|n| !n.is_empty())
            .collect();
        PreparedEntry { entry, names }
    }

    /// The best similarity of `name` to the entry's name or any alias.
    pub fn score_bps(&self, name: &NormalizedName) -> u32 {
        self.names
            .iter()
            .map(|candidate| crate::matching::similarity_bps(name, candidate))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_lists_parse_to_the_same_entries() {
        let csv = "entry_id,name,aliases,list_source,kind,country,date_of_birth\r\n\
                   X-1,\"Doe, John\",Johnny Doe;J. Doe,TEST,person,GB,1970-01-31\r\n\
                   X-2,Acme Shell Co,,TEST,entity,,\r\n";
        let json = r#"{"entries":[
            {"entry_id":"X-1","name":"Doe, John","aliases":["Johnny Doe","J. Doe"],"list_source":"TEST","kind":"person","country":"GB","date_of_birth":"1970-01-31"},
            {"entry_id":"X-2","name":"Acme Shell Co","list_source":"TEST","kind":"entity"}]}"#;
        let from_csv = parse(ListFormat::Csv, csv).expect("csv");
        assert_eq!(from_csv, parse(ListFormat::Json, json).expect("json"));
        assert_eq!(from_csv[0].aliases, vec!["Johnny Doe", "J. Doe"]);
    }

    #[test]
    fn bad_lists_are_refused_with_the_place() {
        let duplicate = r#"[{"entry_id":"A","name":"X Y","list_source":"T","kind":"person"},
                            {"entry_id":"A","name":"Z W","list_source":"T","kind":"person"}]"#;
        assert_eq!(
            parse(ListFormat::Json, duplicate)
                .expect_err("duplicate")
                .at,
            "entry 2"
        );
        let bad_kind = "entry_id,name,list_source,kind\nA,X Y,T,ship\n";
        assert_eq!(
            parse(ListFormat::Csv, bad_kind).expect_err("kind").at,
            "line 2"
        );
        let bad_date = r#"[{"entry_id":"A","name":"X Y","list_source":"T","kind":"person","date_of_birth":"31/01/1970"}]"#;
        assert!(parse(ListFormat::Json, bad_date).is_err());
        assert!(parse(ListFormat::Json, "[]").is_err());
        assert!(parse(ListFormat::Csv, "entry_id,name,list_source,kind,colour\n").is_err());
    }
}
