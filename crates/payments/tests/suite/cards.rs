//! Linked cards on both backends: validation, one card once, the number
//! never back out in clear, removal, and linking a removed card again.

use std::sync::Arc;

use coffer_core::Secret;
use coffer_payments::{CardError, Cards, NewCard};
use coffer_store::sql::SqlStore;
use coffer_testkit::TestDatabase;
use coffer_vault::{LocalMasterKey, Vault};

fn card(number: &str, month: i64, year: i64, cvv: &str) -> NewCard {
    NewCard {
        number: Secret::new(number.to_string()),
        expiry_month: month,
        expiry_year: year,
        cvv: Secret::new(cvv.to_string()),
        funding: "credit".into(),
    }
}

const TODAY: (i64, i64) = (2026, 11);

#[test]
fn cards_link_once_show_only_the_last_four_and_can_be_removed() {
    for db in TestDatabase::both() {
        let sql = Arc::new(SqlStore::open(&db.database, 2).expect("sql"));
        let vault = Arc::new(
            Vault::open(
                Arc::new(LocalMasterKey::from_bytes([6; 32])),
                sql.clone(),
                0,
            )
            .expect("vault"),
        );
        let cards = Cards::new(sql.clone(), vault);
        for (bad, field) in [
            (card("4111 1111 1111 1112", 12, 2030, "123"), "number"),
            (card("4111", 12, 2030, "123"), "number"),
            (card("4111111111111111", 13, 2030, "123"), "expiry_month"),
            (card("4111111111111111", 10, 2026, "123"), "expiry_year"),
            (card("4111111111111111", 12, 2030, "12"), "cvv"),
        ] {
            match cards.link("cus_a", bad, TODAY, "ip", 1) {
                Err(CardError::Invalid { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let linked = cards
            .link(
                "cus_a",
                card("4111 1111 1111 1111", 11, 2026, "123"),
                TODAY,
                "ip",
                1,
            )
            .expect("link");
        assert_eq!((linked.brand, linked.last4.as_str()), ("visa", "1111"));
        assert!(matches!(
            cards.link(
                "cus_a",
                card("4111-1111-1111-1111", 12, 2030, "999"),
                TODAY,
                "ip",
                2
            ),
            Err(CardError::AlreadyLinked)
        ));
        // Another customer may link the same card (a shared family card).
        cards
            .link(
                "cus_b",
                card("4111111111111111", 12, 2030, "123"),
                TODAY,
                "ip",
                3,
            )
            .expect("other customer");
        let list = cards.list("cus_a").expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].last4, "1111");
        // What is stored is not the number.
        let rows = sql
            .run(|db| db.query("SELECT pan_enc, pan_index FROM cards", &[]))
            .expect("rows");
        for row in rows {
            let blob = row.bytes(0).expect("blob");
            assert!(!blob.windows(16).any(|w| w == b"4111111111111111"));
            assert!(!row.text(1).expect("index").contains("4111"));
        }
        cards.remove("cus_a", &linked.id, "ip", 4).expect("remove");
        assert!(cards.list("cus_a").expect("list").is_empty());
        assert!(matches!(
            cards.remove("cus_a", &linked.id, "ip", 5),
            Err(CardError::NotFound)
        ));
        assert!(matches!(
            cards.remove("cus_b", &linked.id, "ip", 5),
            Err(CardError::NotFound)
        ));
        // A removed card can be linked again, as a new card; once.
        let relinked = cards
            .link(
                "cus_a",
                card("4111111111111111", 12, 2031, "123"),
                TODAY,
                "ip",
                6,
            )
            .expect("relink after removal");
        assert_ne!(relinked.id, linked.id);
        assert_eq!(cards.list("cus_a").expect("list").len(), 1);
        assert!(matches!(
            cards.link(
                "cus_a",
                card("4111111111111111", 12, 2031, "123"),
                TODAY,
                "ip",
                7
            ),
            Err(CardError::AlreadyLinked)
        ));
    }
}
