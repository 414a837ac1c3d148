//! Keyset pagination: `?limit=&cursor=` in, `{"items": [...], "next_cursor": ...}` out.
//!
//! The cursor is opaque to clients (base64url of the last row's id; ids are
//! UUID v7, so id order is creation order). Keyset pagination costs the same
//! on page 1000 as on page 1, and rows inserted meanwhile never shift a page.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::error::{ApiError, ValidationIssue};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Debug, Deserialize, IntoParams, garde::Validate)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    #[garde(inner(range(min = 1, max = MAX_LIMIT)))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{22}$")]
    #[garde(skip)]
    pub cursor: Option<String>,
}

/// A validated page request.
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Uuid>,
}

impl PageQuery {
    /// The page asked for, once the cursor is decoded.
    pub fn page_request(&self) -> Result<PageRequest, ApiError> {
        let after = match &self.cursor {
            None => None,
            Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| invalid_cursor(cursor))?),
        };
        Ok(PageRequest {
            limit: self.limit.unwrap_or(DEFAULT_LIMIT),
            after,
        })
    }
}

/// A 422 for a `cursor` that no page handed out (or of another sort).
pub fn invalid_cursor(cursor: &str) -> ApiError {
    const ERROR: &str = "Invalid cursor; pass the next_cursor of a previous page";
    ApiError::Validation(vec![
        ValidationIssue::new(
            vec!["query".into(), "cursor".into()],
            format!("Value error, {ERROR}"),
            "value_error",
        )
        .with_ctx(Some(serde_json::Map::from_iter([(
            "error".to_owned(),
            ERROR.into(),
        )])))
        .with_input(Some(&cursor.into())),
    ])
}

/// Lenient about the unused low bits of the last character, so every
/// 22-character cursor of the documented alphabet decodes.
const CURSOR_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

fn decode_cursor(cursor: &str) -> Option<Uuid> {
    let bytes = CURSOR_ENGINE.decode(cursor).ok()?;
    Uuid::from_slice(&bytes).ok()
}

pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Opaque cursors carrying more than an id (a sort key and the id).
pub fn encode_opaque(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn decode_opaque(cursor: &str) -> Option<Vec<u8>> {
    CURSOR_ENGINE.decode(cursor).ok()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only tells
    /// whether another page exists.
    pub fn from_rows(rows: Vec<T>, limit: u32, id_of: impl Fn(&T) -> Uuid) -> Self {
        Self::with_cursor(rows, limit, |row| encode_cursor(id_of(row)))
    }

    /// Like [`Page::from_rows`], with a cursor made from the last row.
    pub fn with_cursor(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Self {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if has_more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}
