//! Fuzzy name matching for watch-list screening, in integer basis points
//! (10,000 = identical): no floating point anywhere.
//!
//! **Normalisation** (`normalize`): Unicode NFKD, so full-width forms become
//! ASCII (`ＪＯＨＮ` → `john`) and accents split off their letters, which are
//! then dropped (`José Müller` → `jose muller`); a few letters that do not
//! decompose are spelled out (`ø`, `ł`, `đ`, `ß`, `æ`, `œ`, `ı`); lower case;
//! apostrophes join (`O'Brien` → `obrien`), any other punctuation separates
//! words (`Jean-Luc` → `jean luc`). Han characters are kept apart from Latin
//! words, and common traditional characters are mapped to their simplified
//! form (`張偉` → `张伟`) from a small table of characters frequent in names.
//!
//! **Latin names** (`latin_bps`): the words of the two names are paired
//! greedily by their Jaro-Winkler similarity, whatever their order
//! (`Smith John` = `John Smith`); a one-letter word (an initial) pairs with
//! any word starting with that letter at `INITIAL_BPS`. The score is the
//! pairs' similarity weighted by the words' lengths; a word left unpaired
//! weighs its full length when fewer than two words paired (`Smith` alone
//! is not `John Smith`) and a quarter of it otherwise (a middle name left
//! out of one record still matches). When the names have different word
//! counts but about the same letters, the words joined in order are
//! compared too (`Abdul Rahman` = `Abdulrahman`), and the better score counts.
//!
//! **Chinese names** (`han_bps`): identical (after the simplified mapping)
//! is 10,000; one character different, added, dropped or two swapped in a
//! name of three characters or more is `ONE_CHARACTER_BPS` (above the
//! default threshold); otherwise the share of characters that agree. Names
//! in different scripts are not compared (no pinyin table): a list entry
//! carries its romanisations as aliases.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Identical names.
pub const SCORE_MAX_BPS: u32 = 10_000;
/// An initial against a word starting with that letter.
pub const INITIAL_BPS: u32 = 9_000;
/// A Chinese name of three characters or more with one character different.
pub const ONE_CHARACTER_BPS: u32 = 9_000;
/// Jaro similarity from which the common-prefix boost applies (Winkler's 0.7).
const WINKLER_BOOST_FROM_BPS: u64 = 7_000;
const WINKLER_PREFIX_MAX: usize = 4;
/// Letters two names compared joined may differ by (a typo besides the split).
const JOINED_LENGTH_SLACK: usize = 2;

/// Traditional → simplified for characters frequent in Chinese names.
const TRADITIONAL_TO_SIMPLIFIED: &[(char, char)] = &[
    ('張', '张'),
    ('陳', '陈'),
    ('劉', '刘'),
    ('黃', '黄'),
    ('趙', '赵'),
    ('吳', '吴'),
    ('鄭', '郑'),
    ('楊', '杨'),
    ('馬', '马'),
    ('孫', '孙'),
    ('許', '许'),
    ('羅', '罗'),
    ('謝', '谢'),
    ('韓', '韩'),
    ('馮', '冯'),
    ('鄧', '邓'),
    ('蕭', '萧'),
    ('葉', '叶'),
    ('蘇', '苏'),
    ('盧', '卢'),
    ('蔣', '蒋'),
    ('東', '东'),
    ('華', '华'),
    ('國', '国'),
    ('偉', '伟'),
    ('強', '强'),
    ('軍', '军'),
    ('龍', '龙'),
    ('鳳', '凤'),
    ('紅', '红'),
    ('麗', '丽'),
    ('義', '义'),
    ('興', '兴'),
    ('寶', '宝'),
    ('貴', '贵'),
    ('榮', '荣'),
    ('運', '运'),
    ('達', '达'),
    ('進', '进'),
    ('發', '发'),
    ('財', '财'),
    ('慶', '庆'),
    ('壽', '寿'),
    ('學', '学'),
    ('聖', '圣'),
    ('輝', '辉'),
    ('濤', '涛'),
    ('傑', '杰'),
    ('鵬', '鹏'),
    ('劍', '剑'),
    ('鋒', '锋'),
    ('銀', '银'),
    ('鐵', '铁'),
    ('長', '长'),
    ('書', '书'),
    ('雲', '云'),
    ('風', '风'),
    ('飛', '飞'),
    ('愛', '爱'),
    ('靜', '静'),
    ('蘭', '兰'),
    ('鳴', '鸣'),
    ('陽', '阳'),
    ('歐', '欧'),
    ('陸', '陆'),
    ('錢', '钱'),
    ('閻', '阎'),
    ('顧', '顾'),
    ('賈', '贾'),
    ('萬', '万'),
    ('鄒', '邹'),
    ('譚', '谭'),
    ('範', '范'),
    ('湯', '汤'),
    ('鍾', '钟'),
    ('龔', '龚'),
    ('嚴', '严'),
    ('賴', '赖'),
    ('龐', '庞'),
    ('溫', '温'),
    ('紀', '纪'),
    ('項', '项'),
    ('藍', '蓝'),
    ('閔', '闵'),
    ('賀', '贺'),
    ('單', '单'),
    ('曉', '晓'),
    ('穎', '颖'),
    ('綺', '绮'),
    ('維', '维'),
    ('綱', '纲'),
    ('寧', '宁'),
    ('瑩', '莹'),
    ('潔', '洁'),
    ('貞', '贞'),
    ('賢', '贤'),
    ('兒', '儿'),
    ('燁', '烨'),
    ('煒', '炜'),
    ('億', '亿'),
    ('倫', '伦'),
    ('來', '来'),
    ('凱', '凯'),
    ('勝', '胜'),
    ('僑', '侨'),
    ('貿', '贸'),
    ('實', '实'),
    ('業', '业'),
    ('際', '际'),
    ('團', '团'),
    ('開', '开'),
    ('遠', '远'),
    ('產', '产'),
    ('資', '资'),
    ('銷', '销'),
    ('廣', '广'),
    ('電', '电'),
    ('網', '网'),
    ('匯', '汇'),
    ('滙', '汇'),
    ('灣', '湾'),
    ('亞', '亚'),
    ('島', '岛'),
    ('會', '会'),
    ('衛', '卫'),
    ('齊', '齐'),
    ('魯', '鲁'),
    ('鄉', '乡'),
];

/// A name ready to compare: its Latin words and its Han characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NormalizedName {
    pub words: Vec<Vec<char>>,
    pub han: Vec<char>,
}

impl NormalizedName {
    /// The normalised form as one string (words joined by a space, then the
    /// Han characters): what the keyed hash of a screened name is taken over.
    pub fn canonical(&self) -> String {
        let mut text: String = self
            .words
            .iter()
            .map(|w| w.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(" ");
        if !self.han.is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.extend(self.han.iter());
        }
        text
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty() && self.han.is_empty()
    }
}

fn is_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{2A6DF}')
}

fn simplified(c: char) -> char {
    TRADITIONAL_TO_SIMPLIFIED
        .iter()
        .find(|(traditional, _)| *traditional == c)
        .map_or(c, |(_, simple)| *simple)
}

/// Letters NFKD leaves whole.
fn spelled_out(c: char) -> Option<&'static str> {
    Some(match c {
        'ø' | 'Ø' => "o",
        'ł' | 'Ł' => "l",
        'đ' | 'Đ' | 'ð' | 'Ð' => "d",
        'ß' => "ss",
        'æ' | 'Æ' => "ae",
        'œ' | 'Œ' => "oe",
        'ı' => "i",
        'þ' | 'Þ' => "th",
        _ => return None,
    })
}

pub fn normalize(name: &str) -> NormalizedName {
    let mut out = NormalizedName::default();
    let mut word: Vec<char> = Vec::new();
    let flush = |word: &mut Vec<char>, out: &mut NormalizedName| {
        if !word.is_empty() {
            out.words.push(std::mem::take(word));
        }
    };
    for c in name.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        if is_han(c) {
            flush(&mut word, &mut out);
            out.han.push(simplified(c));
        } else if matches!(c, '\'' | '\u{2019}' | '\u{02BC}' | '`') {
            // O'Brien, N’Diaye: one word.
        } else if let Some(text) = spelled_out(c) {
            word.extend(text.chars());
        } else if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else {
            flush(&mut word, &mut out);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Jaro-Winkler similarity in basis points.
pub fn jaro_winkler_bps(a: &[char], b: &[char]) -> u32 {
    if a.is_empty() && b.is_empty() {
        return SCORE_MAX_BPS;
    }
    if a.is_empty() || b.is_empty() {
        return 0;
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut b_used = vec![false; b.len()];
    let mut a_matched = Vec::with_capacity(a.len());
    for (i, ca) in a.iter().enumerate() {
        let start = i.saturating_sub(window);
        let end = (i + window + 1).min(b.len());
        for j in start..end {
            if !b_used[j] && b[j] == *ca {
                b_used[j] = true;
                a_matched.push(*ca);
                break;
            }
        }
    }
    let matches = a_matched.len() as u64;
    if matches == 0 {
        return 0;
    }
    let b_matched = b
        .iter()
        .zip(&b_used)
        .filter(|(_, used)| **used)
        .map(|(c, _)| *c);
    let half_transpositions = a_matched
        .iter()
        .zip(b_matched)
        .filter(|(x, y)| *x != y)
        .count() as u64;
    let transpositions = half_transpositions / 2;
    let (la, lb) = (a.len() as u64, b.len() as u64);
    // (m/|a| + m/|b| + (m - t)/m) / 3, over one common denominator.
    let numerator =
        matches * matches * lb + matches * matches * la + (matches - transpositions) * la * lb;
    let jaro = u64::from(SCORE_MAX_BPS) * numerator / (3 * la * lb * matches);
    let prefix = a
        .iter()
        .zip(b)
        .take(WINKLER_PREFIX_MAX)
        .take_while(|(x, y)| x == y)
        .count() as u64;
    let score = if jaro >= WINKLER_BOOST_FROM_BPS {
        jaro + prefix * (u64::from(SCORE_MAX_BPS) - jaro) / 10
    } else {
        jaro
    };
    u32::try_from(score.min(u64::from(SCORE_MAX_BPS))).unwrap_or(SCORE_MAX_BPS)
}

/// Optimal-string-alignment edit distance (insert, delete, substitute,
/// swap two neighbours).
pub fn edit_distance(a: &[char], b: &[char]) -> usize {
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[n][m]
}

/// Two Chinese names (Han characters, simplified).
pub fn han_bps(a: &[char], b: &[char]) -> u32 {
    if a.is_empty() || b.is_empty() {
        return 0;
    }
    let longest = a.len().max(b.len());
    let distance = edit_distance(a, b);
    if distance == 0 {
        return SCORE_MAX_BPS;
    }
    if distance == 1 && a.len().min(b.len()) >= 3 {
        return ONE_CHARACTER_BPS;
    }
    let agreeing = longest.saturating_sub(distance) as u64;
    u32::try_from(u64::from(SCORE_MAX_BPS) * agreeing / longest as u64).unwrap_or(0)
}

fn word_bps(a: &[char], b: &[char]) -> u32 {
    if a == b {
        return SCORE_MAX_BPS;
    }
    if a.len() == 1 || b.len() == 1 {
        return if a.first() == b.first() {
            INITIAL_BPS
        } else {
            0
        };
    }
    jaro_winkler_bps(a, b)
}

/// Two names in Latin script, by their words.
pub fn latin_bps(a: &[Vec<char>], b: &[Vec<char>]) -> u32 {
    if a.is_empty() || b.is_empty() {
        return 0;
    }
    let mut candidates: Vec<(u32, usize, usize)> = Vec::with_capacity(a.len() * b.len());
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            candidates.push((word_bps(x, y), i, j));
        }
    }
    // Best pairs first; ties in a fixed order, so a score never depends on luck.
    candidates.sort_by(|p, q| q.0.cmp(&p.0).then(p.1.cmp(&q.1)).then(p.2.cmp(&q.2)));
    let (mut a_used, mut b_used) = (vec![false; a.len()], vec![false; b.len()]);
    let (mut weighted, mut weight, mut pairs) = (0u64, 0u64, 0usize);
    for (score, i, j) in candidates {
        if a_used[i] || b_used[j] || score == 0 {
            continue;
        }
        a_used[i] = true;
        b_used[j] = true;
        pairs += 1;
        let w = (a[i].len() + b[j].len()) as u64;
        weighted += u64::from(score) * w;
        weight += w;
    }
    let unpaired = a
        .iter()
        .zip(&a_used)
        .chain(b.iter().zip(&b_used))
        .filter(|(_, used)| !**used)
        .map(|(word, _)| word.len() as u64);
    for length in unpaired {
        weight += if pairs >= 2 { length / 4 } else { length };
    }
    let by_words = weighted
        .checked_div(weight)
        .and_then(|score| u32::try_from(score).ok())
        .unwrap_or(0);
    // Splitting or joining words changes no letters: only names of (about)
    // the same letters are compared joined, so `Petrovsky` alone never
    // matches `Ivan Petrovsky` that way.
    let joined = |words: &[Vec<char>]| -> Vec<char> { words.iter().flatten().copied().collect() };
    let (a_joined, b_joined) = (joined(a), joined(b));
    if a.len() == b.len() || a_joined.len().abs_diff(b_joined.len()) > JOINED_LENGTH_SLACK {
        return by_words;
    }
    by_words.max(jaro_winkler_bps(&a_joined, &b_joined))
}

/// The similarity of two normalised names: the better of the Latin and
/// the Han comparisons (a name may carry both).
pub fn similarity_bps(a: &NormalizedName, b: &NormalizedName) -> u32 {
    latin_bps(&a.words, &b.words).max(han_bps(&a.han, &b.han))
}

/// `similarity_bps` of two names as written.
pub fn name_similarity_bps(a: &str, b: &str) -> u32 {
    similarity_bps(&normalize(a), &normalize(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(text: &str) -> Vec<char> {
        text.chars().collect()
    }

    #[test]
    fn jaro_winkler_matches_the_published_examples() {
        // Winkler's examples: MARTHA/MARHTA 0.961, DWAYNE/DUANE 0.840, DIXON/DICKSONX 0.813,
        // here in basis points rounded down (each step divides exactly, then floors).
        assert_eq!(jaro_winkler_bps(&chars("martha"), &chars("marhta")), 9610);
        assert_eq!(jaro_winkler_bps(&chars("dwayne"), &chars("duane")), 8399);
        assert_eq!(jaro_winkler_bps(&chars("dixon"), &chars("dicksonx")), 8132);
        assert_eq!(jaro_winkler_bps(&chars("abc"), &chars("xyz")), 0);
    }

    #[test]
    fn normalisation_folds_case_accents_width_punctuation_and_traditional_forms() {
        assert_eq!(
            normalize("José  MÜLLER-Smith").canonical(),
            "jose muller smith"
        );
        assert_eq!(normalize("ＪＯＨＮ　ＳＭＩＴＨ").canonical(), "john smith");
        assert_eq!(normalize("O'Brien, Seán").canonical(), "obrien sean");
        assert_eq!(normalize("Łukasz Øberg").canonical(), "lukasz oberg");
        assert_eq!(normalize("張偉").canonical(), "张伟");
        assert_eq!(normalize("约翰·史密斯").canonical(), "约翰史密斯");
    }

    #[test]
    fn edit_distance_counts_swaps_as_one() {
        assert_eq!(edit_distance(&chars("abc"), &chars("acb")), 1);
        assert_eq!(edit_distance(&chars("kitten"), &chars("sitting")), 3);
    }
}
