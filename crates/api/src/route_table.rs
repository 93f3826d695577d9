//! The router together with the list of (method, path) it serves, so that a
//! test can hold the OpenAPI document to exactly the routes that exist.

use axum::handler::Handler;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::AppState;

#[derive(Default)]
pub struct RouteTable {
    router: Router<AppState>,
    served: Vec<(&'static str, &'static str)>,
}

impl RouteTable {
    pub fn get<H, T>(mut self, path: &'static str, handler: H) -> RouteTable
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, get(handler));
        self.served.push(("GET", path));
        self
    }

    pub fn post<H, T>(mut self, path: &'static str, handler: H) -> RouteTable
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, post(handler));
        self.served.push(("POST", path));
        self
    }

    pub fn delete<H, T>(mut self, path: &'static str, handler: H) -> RouteTable
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, delete(handler));
        self.served.push(("DELETE", path));
        self
    }

    pub fn merge(mut self, other: RouteTable) -> RouteTable {
        self.router = self.router.merge(other.router);
        self.served.extend(other.served);
        self
    }

    /// Every (method, path) served, methods upper-case, paths as in OpenAPI.
    pub fn served(&self) -> &[(&'static str, &'static str)] {
        &self.served
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}
