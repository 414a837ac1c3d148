//! Marketplace adapters: the one trait a sync pulls listings through, page
//! by page, and its two implementations — [`demo`] (a deterministic
//! simulator) and [`wildberries`] (an HTTP client for its seller API).

pub mod demo;
pub mod wildberries;

use std::time::Duration;

use rust_decimal::Decimal;

/// One product as the marketplace lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub sku: String,
    pub name: String,
    pub price: Decimal,
    pub stock: i32,
}

/// A page of listings and where the next one starts.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub listings: Vec<Listing>,
    /// `None` on the last page.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// Worth retrying: a timeout, a 429 or a 5xx.
    #[error("the marketplace is temporarily unavailable: {message}")]
    Transient {
        message: String,
        /// What the marketplace asked for (`Retry-After`), if anything.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: the credentials were refused.
    #[error("the marketplace refused the connection's credentials; update them and sync again")]
    Unauthorized,
    /// The marketplace answered something this adapter cannot read.
    #[error("the marketplace answered unexpectedly: {0}")]
    Invalid(String),
}

impl AdapterError {
    pub fn is_transient(&self) -> bool {
        matches!(self, AdapterError::Transient { .. })
    }
}

/// A marketplace, as a sync sees it.
pub trait MarketplaceAdapter: Send + Sync {
    /// The page starting at `cursor` (`None`: the first page).
    fn fetch_page(
        &self,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page, AdapterError>> + Send;
}

/// The adapter of a connection, chosen by its kind.
pub enum Adapter {
    Demo(demo::DemoMarketplace),
    // Boxed: the HTTP client and its settings dwarf the simulator.
    Wildberries(Box<wildberries::WildberriesClient>),
}

impl MarketplaceAdapter for Adapter {
    async fn fetch_page(&self, cursor: Option<&str>) -> Result<Page, AdapterError> {
        match self {
            Adapter::Demo(demo) => demo.fetch_page(cursor).await,
            Adapter::Wildberries(client) => client.fetch_page(cursor).await,
        }
    }
}
