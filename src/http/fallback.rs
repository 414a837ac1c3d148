//! Answers requests no route matched: JSON 405 with `Allow` when the path
//! exists under other methods, JSON 404 otherwise.
//!
//! Routes are registered with method guards, so actix cannot tell "wrong
//! method" from "no such path"; the OpenAPI document can, because it is
//! generated from the same registrations. The route table is built from it
//! once at start.

use actix_web::dev::ResourceDef;
use actix_web::{HttpRequest, HttpResponse, web};
use utoipa::openapi::OpenApi;

use crate::http::error::ApiError;

/// Every documented path pattern and the methods it serves.
pub struct RouteTable {
    routes: Vec<(ResourceDef, Vec<String>)>,
}

impl RouteTable {
    pub fn from_openapi(doc: &OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let mut methods: Vec<String> = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("HEAD", item.head.is_some()),
                    ("OPTIONS", item.options.is_some()),
                ]
                .into_iter()
                .filter(|(_, present)| *present)
                .map(|(m, _)| m.to_owned())
                .collect();
                methods.dedup();
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        Self { routes }
    }

    /// Whether the route `pattern` (as declared, e.g. `/api/v1/products/{id}`) serves `method`.
    pub fn serves(&self, method: &str, pattern: &str) -> bool {
        self.routes.iter().any(|(def, methods)| {
            def.pattern() == Some(pattern) && methods.iter().any(|m| m == method)
        })
    }

    /// The methods served at `path`, or `None` if no route matches it. A
    /// path that is a route of its own (`/invitations/accept`) answers for
    /// that route only, not for the patterns it also fits
    /// (`/invitations/{id}`): it is documented as itself.
    pub fn allowed_methods(&self, path: &str) -> Option<Vec<String>> {
        let matching: Vec<&(ResourceDef, Vec<String>)> = self
            .routes
            .iter()
            .filter(|(def, _)| def.is_match(path))
            .collect();
        let exact: Vec<&(ResourceDef, Vec<String>)> = matching
            .iter()
            .copied()
            .filter(|(def, _)| def.pattern().is_some_and(|p| !p.contains('{')))
            .collect();
        let chosen = if exact.is_empty() { matching } else { exact };
        let mut allowed: Vec<String> = chosen
            .into_iter()
            .flat_map(|(_, methods)| methods.iter().cloned())
            .collect();
        if allowed.is_empty() {
            return None;
        }
        allowed.sort();
        allowed.dedup();
        Some(allowed)
    }
}

pub async fn not_found_or_method_not_allowed(
    req: HttpRequest,
    routes: web::Data<RouteTable>,
) -> Result<HttpResponse, ApiError> {
    Err(match routes.allowed_methods(req.path()) {
        Some(allow) => ApiError::MethodNotAllowed { allow },
        None => ApiError::NotFound {
            detail: "Not found".into(),
        },
    })
}
