//! The customer app's pages, one module per area.

use std::collections::HashMap;

use axum::routing::{get, post};
use axum::Router;

use crate::WebState;

mod alerts;
mod auth;
mod bills;
mod funding;
mod fx;
mod held;
mod help;
mod history;
mod home;
mod merchant;
mod passkeys;
mod pay;
mod privacy;
mod settings;
mod staff;
mod staff_merchants;
mod staff_ops;
mod staff_rules;
mod stepup;
mod support;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(home::home))
        .route("/signin", get(auth::sign_in_page).post(auth::sign_in))
        .route("/signin/verify", post(auth::verify_sign_in))
        .route("/signup", get(auth::sign_up_page).post(auth::sign_up))
        .route("/signup/complete", post(auth::complete_sign_up))
        .route("/signout", post(auth::sign_out))
        .route("/kyc", get(auth::kyc_page).post(auth::kyc))
        .merge(settings::routes())
        .merge(alerts::routes())
        .merge(funding::routes())
        .merge(pay::routes())
        .merge(history::routes())
        .merge(merchant::routes())
        .merge(privacy::routes())
        .merge(staff::routes())
        .merge(help::routes())
        .merge(held::routes())
        .merge(bills::routes())
        .merge(fx::routes())
        .merge(passkeys::routes())
        .merge(staff_rules::routes())
        .merge(staff_merchants::routes())
        .merge(staff_ops::routes())
        .merge(support::routes())
}

/// A form's fields.
pub type Form = HashMap<String, String>;

/// A field of a form ("" when absent), trimmed.
pub fn field<'a>(form: &'a Form, name: &str) -> &'a str {
    form.get(name).map_or("", |v| v.trim())
}
