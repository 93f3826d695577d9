//! The message catalogue: every string a page shows, in English and
//! Simplified Chinese, from `messages/en.txt` and `messages/zh.txt`
//! (`key = text`, one a line). A test holds the two files to the same keys
//! and every key the code asks for to one that exists.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    En,
    Zh,
}

impl Locale {
    pub const ALL: [Locale; 2] = [Locale::Zh, Locale::En];

    pub fn code(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Zh => "zh",
        }
    }

    /// The `lang` attribute of the page.
    pub fn html_lang(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Zh => "zh-CN",
        }
    }

    pub fn parse(code: &str) -> Option<Locale> {
        match code {
            "en" => Some(Locale::En),
            "zh" => Some(Locale::Zh),
            _ => None,
        }
    }

    /// The first language of `Accept-Language` we speak (quality values are
    /// ignored: browsers list languages in the order of preference anyway);
    /// Chinese when none, the bank's home market.
    pub fn from_accept_language(header: &str) -> Locale {
        header
            .split(',')
            .filter_map(|part| part.split(';').next())
            .map(|tag| tag.trim().to_ascii_lowercase())
            .find_map(|tag| {
                if tag.starts_with("zh") {
                    Some(Locale::Zh)
                } else if tag.starts_with("en") {
                    Some(Locale::En)
                } else {
                    None
                }
            })
            .unwrap_or(Locale::Zh)
    }

    /// The text for `key`; the key itself when missing (a test keeps that
    /// from shipping).
    pub fn t(self, key: &str) -> &'static str {
        match self.lookup(key) {
            Some(text) => text,
            None => {
                tracing::warn!(key, "message missing from the catalogue");
                missing(key)
            }
        }
    }

    /// The text for `key`, if the catalogue has it.
    pub fn lookup(self, key: &str) -> Option<&'static str> {
        let catalogue = catalogues();
        let table = match self {
            Locale::En => &catalogue.0,
            Locale::Zh => &catalogue.1,
        };
        table.get(key).copied()
    }

    /// `t(key)` with `{name}` placeholders filled in.
    pub fn tf(self, key: &str, values: &[(&str, &str)]) -> String {
        let mut text = self.t(key).to_string();
        for (name, value) in values {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }
}

fn missing(key: &str) -> &'static str {
    static MISSING: OnceLock<std::sync::Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let map = MISSING.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() > 1_000 {
        return "?";
    }
    map.entry(key.to_string())
        .or_insert_with(|| Box::leak(key.to_string().into_boxed_str()))
}

pub const EN_SOURCE: &str = include_str!("../messages/en.txt");
pub const ZH_SOURCE: &str = include_str!("../messages/zh.txt");

type Table = HashMap<&'static str, &'static str>;

fn catalogues() -> &'static (Table, Table) {
    static CATALOGUES: OnceLock<(Table, Table)> = OnceLock::new();
    CATALOGUES.get_or_init(|| (parse(EN_SOURCE), parse(ZH_SOURCE)))
}

/// `key = text` lines; blank lines and `#` comments skipped.
pub fn parse(source: &'static str) -> Table {
    source
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(" = "))
        .map(|(key, text)| (key.trim(), text.trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_the_same_keys() {
        let (en, zh) = (parse(EN_SOURCE), parse(ZH_SOURCE));
        let missing_zh: Vec<_> = en.keys().filter(|k| !zh.contains_key(*k)).collect();
        let missing_en: Vec<_> = zh.keys().filter(|k| !en.contains_key(*k)).collect();
        assert!(missing_zh.is_empty(), "missing in zh.txt: {missing_zh:?}");
        assert!(missing_en.is_empty(), "missing in en.txt: {missing_en:?}");
        for (key, text) in en.iter().chain(zh.iter()) {
            assert!(!text.is_empty(), "{key} is empty");
        }
    }

    #[test]
    fn no_line_is_malformed_or_duplicated() {
        for source in [EN_SOURCE, ZH_SOURCE] {
            let mut seen = std::collections::HashSet::new();
            for line in source.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (key, _) = line
                    .split_once(" = ")
                    .unwrap_or_else(|| panic!("malformed: {line}"));
                assert!(seen.insert(key.trim()), "duplicate key {key}");
            }
        }
    }

    /// Every `t("…")`/`tf("…"` in the sources names a key of the catalogue.
    #[test]
    fn every_key_the_code_uses_exists() {
        let en = parse(EN_SOURCE);
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut files = vec![std::path::PathBuf::from(dir)];
        let mut checked = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).expect("read dir") {
                    files.push(entry.expect("entry").path());
                }
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            for marker in [".t(\"", ".tf(\""] {
                for (at, _) in text.match_indices(marker) {
                    let rest = &text[at + marker.len()..];
                    let key = &rest[..rest.find('"').expect("closing quote")];
                    assert!(
                        en.contains_key(key),
                        "{}: key {key} not in the catalogue",
                        path.display()
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            checked > 50,
            "only {checked} keys found: the scan is broken"
        );
    }

    #[test]
    fn accept_language_picks_the_first_language_spoken() {
        assert_eq!(Locale::from_accept_language("en-US,en;q=0.9"), Locale::En);
        assert_eq!(Locale::from_accept_language("fr, zh-CN;q=0.8"), Locale::Zh);
        assert_eq!(Locale::from_accept_language("de"), Locale::Zh);
        assert_eq!(Locale::from_accept_language(""), Locale::Zh);
    }
}
