//! Schemas of the API's field types (ids, codes, currencies, amounts, times,
//! metadata) and its shared parameters, built from the same named limits the
//! parsers enforce, so that the document cannot claim a bound the code does
//! not hold. Used through `#[schema(schema_with = …)]`.

use coffer_core::currency::CURRENCY_CODE_LENGTH_MAX;
use coffer_core::id::{CODE_LENGTH_MAX, IDENTIFIER_LENGTH_MAX};
use coffer_ledger::metadata::{
    METADATA_ENTRIES_MAX, METADATA_KEY_LENGTH_MAX, METADATA_VALUE_LENGTH_MAX,
};
use coffer_ledger::{AccountKind, BalanceConstraint, TransferKind, HOLD_TIMEOUT_MAX_MS};
use coffer_store::PAGE_SIZE_MAX;
use serde_json::{json, Value};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{
    Array, ArrayBuilder, KnownFormat, Object, ObjectBuilder, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, Required};

use crate::idempotency::IDEMPOTENCY_KEY_LENGTH_MAX;
use crate::ledger_routes::{BATCH_TRANSFERS_MAX, PAGE_SIZE_DEFAULT};

/// The states `HoldState::as_str` names; a unit test checks each parses back.
pub const HOLD_STATES: [&str; 4] = ["pending", "captured", "released", "expired"];
/// The sides `Side::as_str` names.
pub const SIDES: [&str; 2] = ["debit", "credit"];
/// The statuses `account_view` names.
pub const ACCOUNT_STATUSES: [&str; 2] = ["open", "closed"];

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn nullable(kind: Type) -> SchemaType {
    SchemaType::from_iter([kind, Type::Null])
}

fn int64() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
}

fn string_enum(values: impl IntoIterator<Item = &'static str>, description: &str) -> Object {
    string()
        .enum_values(Some(values))
        .description(Some(description))
        .build()
}

// ---- identifiers and codes ------------------------------------------------------

/// A character class for `Identifier::parse`.
const IDENTIFIER_PATTERN: &str = "^[A-Za-z0-9._:-]+$";
/// A character class for `Code::parse`.
const CODE_PATTERN: &str = "^[a-z0-9._-]+$";
/// The shape `Currency::parse` takes; whether the ledger knows it is checked after.
const CURRENCY_PATTERN: &str = "^[A-Z0-9_]+$";
/// `Metadata::new` keys.
const METADATA_KEY_PATTERN: &str = "^[a-z0-9_.-]+$";
/// No control character (`char::is_control`: the Unicode Cc category).
const NO_CONTROL_PATTERN: &str = "^[^\\x00-\\x1F\\x7F-\\x9F]*$";
/// `idempotency::key`: printable ASCII without space.
const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]+$";

fn identifier_builder() -> ObjectBuilder {
    string()
        .min_length(Some(1))
        .max_length(Some(IDENTIFIER_LENGTH_MAX))
        .pattern(Some(IDENTIFIER_PATTERN))
}

/// A client-assigned id (account, transfer, hold, owner).
pub fn identifier() -> Object {
    identifier_builder()
        .description(Some(
            "Client-assigned id: letters, digits, '.', '_', ':' and '-'.",
        ))
        .examples([json!("wallet-alice")])
        .build()
}

/// An id as the API returns it: a client's id, or one the ledger assigned
/// itself (`~expire:<hold id>` for an expiry), which clients cannot use.
pub fn stored_identifier() -> Object {
    string()
        .min_length(Some(1))
        .description(Some(
            "A client-assigned id, or one the ledger assigned itself (starting with '~').",
        ))
        .build()
}

fn code_builder() -> ObjectBuilder {
    string()
        .min_length(Some(1))
        .max_length(Some(CODE_LENGTH_MAX))
        .pattern(Some(CODE_PATTERN))
        .description(Some(
            "Reason code for reporting and filtering, e.g. `p2p`, `fee`, `topup.card`.",
        ))
}

pub fn code() -> Object {
    code_builder().examples([json!("payment")]).build()
}

pub fn currency() -> Object {
    string()
        .min_length(Some(3))
        .max_length(Some(CURRENCY_CODE_LENGTH_MAX))
        .pattern(Some(CURRENCY_PATTERN))
        .description(Some(
            "ISO 4217 code or a unit the bank defined (e.g. `POINTS`); unknown codes are 422 `unknown_currency`.",
        ))
        .examples([json!("CNY")])
        .build()
}

// ---- money and time ---------------------------------------------------------------

/// An amount to move: positive integer minor units.
pub fn amount() -> Object {
    int64()
        .minimum(Some(1))
        .description(Some(
            "Positive integer in the currency's minor units (10000 CNY = 100.00 yuan). Never a decimal.",
        ))
        .examples([json!(10_000)])
        .build()
}

/// A capture's amount: absent or null captures the whole hold.
pub fn optional_amount() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .description(Some(
            "Minor units to capture, at most the hold's amount; absent or null captures it all.",
        ))
        .build()
}

/// A balance or a sum of entries: integer minor units, possibly negative.
pub fn minor_units() -> Object {
    int64()
        .description(Some("Integer minor units of the account's currency."))
        .build()
}

pub fn timestamp() -> Object {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .description(Some(
            "RFC 3339 time in UTC with nanoseconds, e.g. `2026-11-24T03:27:14.123456789Z`.",
        ))
        .build()
}

pub fn optional_timestamp() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .description(Some("RFC 3339 time in UTC with nanoseconds."))
        .build()
}

pub fn hold_timeout_ms() -> Object {
    int64()
        .minimum(Some(1))
        .maximum(Some(HOLD_TIMEOUT_MAX_MS))
        .description(Some(
            "Milliseconds until an uncaptured hold expires and its funds are freed (at most 30 days).",
        ))
        .examples([json!(60_000)])
        .build()
}

/// A batch member: a hold when present, a posted transfer when absent.
pub fn optional_hold_timeout_ms() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(HOLD_TIMEOUT_MAX_MS))
        .description(Some(
            "Present: this member places a hold expiring after this many milliseconds. Absent or null: a posted transfer.",
        ))
        .build()
}

// ---- metadata -------------------------------------------------------------------

fn metadata_builder() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(METADATA_ENTRIES_MAX))
        .property_names(Some(
            string()
                .min_length(Some(1))
                .max_length(Some(METADATA_KEY_LENGTH_MAX))
                .pattern(Some(METADATA_KEY_PATTERN)),
        ))
        .additional_properties(Some(
            string()
                .max_length(Some(METADATA_VALUE_LENGTH_MAX))
                .pattern(Some(NO_CONTROL_PATTERN))
                .description(Some(format!(
                    "At most {METADATA_VALUE_LENGTH_MAX} bytes of UTF-8, no control characters."
                ))),
        ))
        .description(Some(format!(
            "Up to {METADATA_ENTRIES_MAX} string entries stored with the transfer (order ids, channel, …)."
        )))
}

pub fn metadata() -> Object {
    metadata_builder()
        .default(Some(json!({})))
        .examples([json!({"order_id": "A-1001"})])
        .build()
}

/// A batch's members.
pub fn batch_transfers() -> Array {
    ArrayBuilder::new()
        .items(Ref::from_schema_name("BatchTransferRequest"))
        .min_items(Some(1))
        .max_items(Some(BATCH_TRANSFERS_MAX))
        .description(Some(format!(
            "1 to {BATCH_TRANSFERS_MAX} (BATCH_TRANSFERS_MAX) transfers and holds, executed in order."
        )))
        .build()
}

// ---- enumerations ---------------------------------------------------------------

pub fn account_kind() -> Object {
    string_enum(
        AccountKind::ALL.map(AccountKind::as_str),
        "Which side the balance normally sits on: customer wallets are `liability`, the bank's settlement accounts `asset`.",
    )
}

pub fn balance_constraint() -> Object {
    string_enum(
        BalanceConstraint::ALL.map(BalanceConstraint::as_str),
        "`no_overdraft`: debits may never exceed credits (customer wallets). `must_stay_in_debit`: the reverse. `none`: unconstrained.",
    )
}

pub fn optional_balance_constraint() -> Object {
    let values: Vec<Value> = BalanceConstraint::ALL
        .map(|c| Value::from(c.as_str()))
        .into_iter()
        .chain([Value::Null])
        .collect();
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .enum_values(Some(values))
        .default(Some(json!("none")))
        .description(Some(
            "`no_overdraft`: debits may never exceed credits (customer wallets). `must_stay_in_debit`: the reverse. `none` (the default): unconstrained.",
        ))
        .build()
}

pub fn account_status() -> Object {
    string_enum(ACCOUNT_STATUSES, "A closed account takes no new transfers.")
}

pub fn transfer_kind() -> Object {
    string_enum(
        TransferKind::ALL.map(TransferKind::as_str),
        "`posted` moves money; `hold` reserves it; `capture`, `release` and `expire` resolve a hold.",
    )
}

pub fn hold_state() -> Object {
    string_enum(HOLD_STATES, "Where the hold stands.")
}

pub fn side() -> Object {
    string_enum(SIDES, "This account's side of the transfer.")
}

// ---- parameters -----------------------------------------------------------------

fn parameter(
    name: &str,
    place: ParameterIn,
    required: bool,
    description: &str,
) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
}

/// The `{id}` of a path.
pub fn id_path(description: &str, example: &str) -> Parameter {
    parameter("id", ParameterIn::Path, true, description)
        .schema(Some(identifier_builder().build()))
        .example(Some(json!(example)))
        .build()
}

/// `Idempotency-Key` on a state-changing POST.
pub fn idempotency_key() -> Parameter {
    parameter(
        "Idempotency-Key",
        ParameterIn::Header,
        true,
        "Any unique string (a UUID is fine). A retry with the same key and body gets the first response back (marked `Idempotent-Replayed: true`) and never runs twice; the same key with a different body is 422 `idempotency_key_reused`.",
    )
    .schema(Some(
        string()
            .min_length(Some(1))
            .max_length(Some(IDEMPOTENCY_KEY_LENGTH_MAX))
            .pattern(Some(IDEMPOTENCY_KEY_PATTERN)),
    ))
    .example(Some(json!("3f1c2a9e-5b7d-4e0a-9c61-0d2f8a7b6e14")))
    .build()
}

fn time_query(name: &str, description: &str) -> Parameter {
    parameter(name, ParameterIn::Query, false, description)
        .schema(Some(
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        ))
        .example(Some(json!("2026-11-25T08:00:00Z")))
        .build()
}

/// `?as_of=` on an account.
pub fn as_of_query() -> Vec<Parameter> {
    vec![time_query(
        "as_of",
        "Report the balances as they stood at this RFC 3339 time instead of now.",
    )]
}

/// The statement's filters and page.
pub fn entries_query() -> Vec<Parameter> {
    vec![
        parameter(
            "cursor",
            ParameterIn::Query,
            false,
            "Where to continue: the `next_cursor` of the previous page, passed back unchanged.",
        )
        .schema(Some(string().pattern(Some("^[+-]?[0-9]+$"))))
        .build(),
        parameter(
            "limit",
            ParameterIn::Query,
            false,
            &format!(
                "Entries per page: 1 to {PAGE_SIZE_MAX} (PAGE_SIZE_MAX), {PAGE_SIZE_DEFAULT} when absent."
            ),
        )
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(PAGE_SIZE_MAX))
                .default(Some(json!(PAGE_SIZE_DEFAULT))),
        ))
        .build(),
        time_query("from", "Only entries at or after this RFC 3339 time."),
        time_query("until", "Only entries at or before this RFC 3339 time."),
        parameter(
            "code",
            ParameterIn::Query,
            false,
            "Only transfers with this reason code.",
        )
        .schema(Some(code_builder()))
        .build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_names_are_the_ledgers() {
        for state in HOLD_STATES {
            assert!(coffer_ledger::HoldState::parse(state).is_some(), "{state}");
        }
        assert_eq!(
            SIDES,
            [
                coffer_ledger::Side::Debit.as_str(),
                coffer_ledger::Side::Credit.as_str()
            ]
        );
    }
}
