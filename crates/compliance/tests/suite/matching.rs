//! Name matching as a table: each row is a screened name, a listed name, and
//! whether it must reach the default threshold (8,500 bps). Integer scores
//! only; the table also pins a few exact scores so a change to the
//! algorithm is a visible change to this file.

use coffer_compliance::matching::{name_similarity_bps, SCORE_MAX_BPS};
use coffer_compliance::DEFAULT_THRESHOLD_BPS;

const HIT: bool = true;
const MISS: bool = false;

#[test]
fn latin_names_match_through_case_accents_punctuation_order_initials_and_typos() {
    let table: &[(&str, &str, bool)] = &[
        // Identical, case, whitespace.
        ("Ivan Petrovsky", "IVAN   petrovsky", HIT),
        // Diacritics and letters that do not decompose.
        ("José Müller", "Jose Muller", HIT),
        ("Łukasz Øberg", "Lukasz Oberg", HIT),
        ("Jöns Færbeck", "Jons Faerbeck", HIT),
        // Full-width forms (a name typed on a CJK keyboard).
        ("ＩＶＡＮ　ＰＥＴＲＯＶＳＫＹ", "Ivan Petrovsky", HIT),
        // Punctuation: apostrophes join, hyphens and commas separate.
        ("Sean O'Brien", "Sean OBrien", HIT),
        ("Petrovsky, Ivan", "Ivan Petrovsky", HIT),
        (
            "Marguerite Oduya-Lestrange",
            "Marguerite Oduya Lestrange",
            HIT,
        ),
        // Token order.
        ("Petrovsky Ivan", "Ivan Petrovsky", HIT),
        // Initials.
        ("I. Petrovsky", "Ivan Petrovsky", HIT),
        ("J. Petrovsky", "Ivan Petrovsky", MISS),
        // A middle name on one side only.
        ("Ivan Sergeyevich Petrovsky", "Ivan Petrovsky", HIT),
        // Split or joined.
        ("Abdul Rahman Haddad", "Abdulrahman Haddad", HIT),
        // Small typos.
        ("Ivan Petrovksy", "Ivan Petrovsky", HIT),
        ("Ivan Petrovski", "Ivan Petrovsky", HIT),
        ("Mohamed Haddad", "Mohammed Haddad", HIT),
        // A surname alone is not the person.
        ("Petrovsky", "Ivan Petrovsky", MISS),
        // Different people.
        ("John Smith", "Ivan Petrovsky", MISS),
        ("Ivan Petrov", "Olga Petrova", MISS),
        ("Maria Garcia", "Mario Gomez", MISS),
    ];
    check(table);
}

#[test]
fn chinese_names_match_exactly_across_scripts_and_one_character_apart() {
    let table: &[(&str, &str, bool)] = &[
        ("钱多多", "钱多多", HIT),
        // Traditional and simplified forms.
        ("錢多多", "钱多多", HIT),
        ("張偉明", "张伟明", HIT),
        // Spaces and full-width spaces inside a Chinese name.
        ("钱 多多", "钱多多", HIT),
        ("钱　多多", "钱多多", HIT),
        // One character different, added, dropped or swapped (three or more characters).
        ("钱多朵", "钱多多", HIT),
        ("欧阳洗钱", "欧阳洗线", HIT),
        ("欧阳洗钱", "欧洗钱", HIT),
        ("张明伟", "张伟明", HIT),
        // Two-character names need all characters: one different is another person.
        ("王伟", "王芳", MISS),
        // Two characters different.
        ("钱少少", "钱多多", MISS),
        // Other scripts are not compared (list aliases carry romanisations).
        ("Qian Duoduo", "钱多多", MISS),
        ("Qian Duoduo", "Qian Duoduo", HIT),
    ];
    check(table);
}

#[test]
fn scores_are_integer_basis_points_with_known_values() {
    assert_eq!(
        name_similarity_bps("Ivan Petrovsky", "ivan petrovsky"),
        SCORE_MAX_BPS
    );
    assert_eq!(name_similarity_bps("钱多朵", "钱多多"), 9_000);
    assert_eq!(name_similarity_bps("王伟", "王芳"), 5_000);
    assert_eq!(name_similarity_bps("", "Ivan"), 0);
    assert_eq!(name_similarity_bps("...", "Ivan"), 0);
    // The threshold is a bound, not a guess: just below and at it.
    let score = name_similarity_bps("Ivan Petrovsky", "Ivan Petrovski");
    assert!(
        (DEFAULT_THRESHOLD_BPS..SCORE_MAX_BPS).contains(&score),
        "{score}"
    );
}

fn check(table: &[(&str, &str, bool)]) {
    let mut wrong = Vec::new();
    for (screened, listed, hit) in table {
        let score = name_similarity_bps(screened, listed);
        // Symmetric: which side is the list must not matter.
        assert_eq!(
            score,
            name_similarity_bps(listed, screened),
            "{screened} / {listed}"
        );
        if (score >= DEFAULT_THRESHOLD_BPS) != *hit {
            wrong.push(format!(
                "{screened:?} vs {listed:?}: {score} bps, expected {}",
                if *hit { "a hit" } else { "no hit" }
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}
