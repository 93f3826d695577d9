//! The parameters operations share, as `IntoParams` for `params(…)` in
//! `#[utoipa::path]`. Written by hand (not derived) so that their bounds and
//! descriptions come from the named limits in `fields`.

use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::IntoParams;

use super::fields;
use crate::ledger_routes::{AsOfQuery, EntriesQuery};

/// The `Idempotency-Key` header of a state-changing POST.
pub struct IdempotencyKey;

impl IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![fields::idempotency_key()]
    }
}

/// Declares a `{id}` path parameter naming one kind of resource, with an
/// example that `scripts/fuzz-api` seeds.
macro_rules! id_paths {
    ($($name:ident => $description:expr, $example:expr;)*) => {$(
        pub struct $name;

        impl IntoParams for $name {
            fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
                vec![fields::id_path($description, $example)]
            }
        }
    )*};
}

id_paths! {
    AccountId => "The account's id.", "wallet-alice";
    TransferId => "The transfer's id.", "topup-1001";
    HoldId => "The hold's id: the id of the transfer that placed it.", "hold-1001";
}

impl IntoParams for AsOfQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        fields::as_of_query()
    }
}

impl IntoParams for EntriesQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        fields::entries_query()
    }
}
