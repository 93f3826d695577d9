//! Help: the questions customers ask most, answered in their language.
//! Open to visitors too, so someone who cannot sign in still finds answers.

use axum::routing::get;
use axum::Router;
use maud::html;

use crate::ctx::Ctx;
use crate::layout::page;
use crate::WebState;

/// The FAQ entries: `help.q.<name>` and `help.a.<name>` in both catalogues.
const QUESTIONS: [&str; 7] = [
    "pay",
    "topup",
    "fees",
    "limits",
    "lost_phone",
    "refund",
    "privacy",
];

pub fn routes() -> Router<WebState> {
    Router::new().route("/help", get(help_page))
}

async fn help_page(ctx: Ctx) -> axum::response::Response {
    page(
        &ctx,
        "help.title",
        html! {
            section.card.narrow aria-labelledby="faq-title" {
                h1 #faq-title { (ctx.t("help.title")) }
                p { (ctx.t("help.intro")) }
                p { a.button href="/help/requests" data-testid="my-requests" { (ctx.t("help.requests")) } }
                @for name in QUESTIONS {
                    details data-testid=(format!("faq-{name}")) {
                        summary { (ctx.t(&format!("help.q.{name}"))) }
                        p { (ctx.t(&format!("help.a.{name}"))) }
                    }
                }
            }
        },
    )
}
