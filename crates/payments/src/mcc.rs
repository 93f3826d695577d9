//! Merchant category codes (ISO 18245) Coffer accepts, each with the
//! spending category customers see and the default merchant discount rate.
//!
//! The table is shipped, not free text: a merchant can only be onboarded
//! with a code listed here, so categories and fees are always defined. A
//! bank extends it with its scheme's full list; high-risk codes (gambling
//! 7995, money transfer 4829, quasi-cash 6051) are deliberately absent.

/// (code, description, customer-facing category, default MDR in basis points)
pub const MERCHANT_CATEGORIES: [(&str, &str, &str, u32); 30] = [
    ("4111", "Commuter transport, ferries", "transport", 30),
    ("4121", "Taxicabs and limousines", "transport", 38),
    ("4131", "Bus lines", "transport", 30),
    ("4511", "Airlines", "travel", 60),
    ("4722", "Travel agencies and tour operators", "travel", 60),
    (
        "4812",
        "Telecommunication equipment and phone sales",
        "shopping",
        60,
    ),
    ("4900", "Utilities: electric, gas, water", "bills", 20),
    ("5200", "Home supply warehouse stores", "shopping", 60),
    ("5311", "Department stores", "shopping", 60),
    ("5331", "Variety stores", "shopping", 60),
    ("5399", "Miscellaneous general merchandise", "shopping", 60),
    ("5411", "Grocery stores, supermarkets", "groceries", 38),
    ("5462", "Bakeries", "food", 38),
    (
        "5499",
        "Miscellaneous food stores, convenience stores",
        "groceries",
        38,
    ),
    ("5541", "Service stations", "transport", 38),
    ("5651", "Family clothing stores", "shopping", 60),
    ("5691", "Men's and women's clothing stores", "shopping", 60),
    ("5732", "Electronics stores", "shopping", 60),
    ("5812", "Eating places, restaurants", "food", 38),
    ("5813", "Drinking places, bars", "food", 38),
    ("5814", "Fast food restaurants, cafés", "food", 38),
    ("5912", "Drug stores and pharmacies", "health", 38),
    ("5942", "Book stores", "shopping", 60),
    ("5999", "Miscellaneous and specialty retail", "shopping", 60),
    ("7011", "Hotels and lodging", "travel", 60),
    ("7230", "Beauty and barber shops", "services", 60),
    ("7832", "Motion picture theatres", "entertainment", 60),
    ("8062", "Hospitals", "health", 20),
    ("8211", "Elementary and secondary schools", "education", 20),
    ("8220", "Colleges and universities", "education", 20),
];

/// A listed merchant category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MerchantCategory {
    pub code: &'static str,
    pub description: &'static str,
    pub category: &'static str,
    pub discount_rate_bps: u32,
}

/// The category of `code`, if Coffer accepts it.
pub fn category(code: &str) -> Option<MerchantCategory> {
    MERCHANT_CATEGORIES
        .iter()
        .find(|(c, _, _, _)| *c == code)
        .map(|(code, description, category, bps)| MerchantCategory {
            code,
            description,
            category,
            discount_rate_bps: *bps,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for (code, _, _, bps) in MERCHANT_CATEGORIES {
            assert!(code.len() == 4 && code.bytes().all(|b| b.is_ascii_digit()));
            assert!(seen.insert(code), "{code} twice");
            assert!(bps <= 1_000, "{code}: a rate above 10% is a typo");
        }
        assert_eq!(category("5814").map(|c| c.category), Some("food"));
        assert!(category("7995").is_none());
        assert!(category("58").is_none());
    }
}
