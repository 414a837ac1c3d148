//! Wildberries seller API client.
//!
//! A page of the sync is one page of product cards from the content API
//! (`POST {content_url}/content/v2/get/cards/list`, cursor pagination), with
//! the stock of its barcodes from the marketplace API
//! (`POST {marketplace_url}/api/v3/stocks/{warehouse_id}`, summed per card)
//! and prices from the prices API (`GET {prices_url}/api/v2/list/goods/filter`,
//! read once per sync, 1,000 goods a request). The token goes in the
//! `Authorization` header. Each request is bounded by `request_timeout_ms`;
//! redirects are not followed. Timeouts, 429 (its `Retry-After` honoured)
//! and 5xx are transient; 401/403 mean the credentials are wrong.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;

use super::{AdapterError, Listing, MarketplaceAdapter, Page};
use crate::config::WildberriesSettings;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::outbound;

pub struct WildberriesClient {
    http: reqwest::Client,
    metrics: Metrics,
    settings: WildberriesSettings,
    token: SecretString,
    prices: OnceCell<HashMap<u64, Decimal>>,
}

#[derive(Deserialize)]
struct CardsResponse {
    cards: Vec<Card>,
    cursor: CardsCursor,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Card {
    #[serde(rename = "nmID")]
    nm_id: u64,
    vendor_code: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    sizes: Vec<CardSize>,
}

#[derive(Deserialize)]
struct CardSize {
    #[serde(default)]
    skus: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CardsCursor {
    updated_at: Option<String>,
    #[serde(rename = "nmID")]
    nm_id: Option<u64>,
    total: u32,
}

#[derive(Deserialize)]
struct StocksResponse {
    stocks: Vec<Stock>,
}

#[derive(Deserialize)]
struct Stock {
    sku: String,
    amount: i64,
}

#[derive(Deserialize)]
struct PricesResponse {
    data: PricesData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PricesData {
    list_goods: Vec<Goods>,
}

#[derive(Deserialize)]
struct Goods {
    #[serde(rename = "nmID")]
    nm_id: u64,
    sizes: Vec<GoodsSize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GoodsSize {
    price: Decimal,
    discounted_price: Option<Decimal>,
}

/// Where a cards page starts: the previous page's last card.
fn encode_cursor(updated_at: &str, nm_id: u64) -> String {
    format!("{nm_id}|{updated_at}")
}

fn decode_cursor(cursor: &str) -> Option<(u64, &str)> {
    let (nm_id, updated_at) = cursor.split_once('|')?;
    Some((nm_id.parse().ok()?, updated_at))
}

impl WildberriesClient {
    pub fn new(
        settings: &WildberriesSettings,
        token: SecretString,
        metrics: Metrics,
    ) -> Result<Self, AdapterError> {
        let timeout = Duration::from_millis(settings.request_timeout_ms);
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| AdapterError::Invalid(format!("HTTP client: {err}")))?;
        Ok(Self {
            http,
            settings: settings.clone(),
            token,
            metrics,
            prices: OnceCell::new(),
        })
    }

    /// Sends a request and reads its JSON, classifying failures. Error
    /// messages name the API, never the URL with its parameters or the token.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        api: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, AdapterError> {
        let request = request.header(AUTHORIZATION, self.token.expose_secret());
        let response = outbound::send(&self.metrics, "wildberries", api, request)
            .await
            .map_err(|err| AdapterError::Transient {
                message: if err.is_timeout() {
                    format!("the {api} API timed out")
                } else {
                    format!("the {api} API could not be reached")
                },
                retry_after: None,
            })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(AdapterError::Unauthorized);
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(AdapterError::Transient {
                message: format!("the {api} API answered {}", status.as_u16()),
                retry_after,
            });
        }
        if !status.is_success() {
            return Err(AdapterError::Invalid(format!(
                "the {api} API answered {}",
                status.as_u16()
            )));
        }
        response
            .json()
            .await
            .map_err(|_| AdapterError::Invalid(format!("the {api} API answered unreadable JSON")))
    }

    /// Every price, by card (the discounted price when there is one).
    async fn prices(&self) -> Result<&HashMap<u64, Decimal>, AdapterError> {
        self.prices
            .get_or_try_init(|| async {
                let mut prices = HashMap::new();
                let mut offset = 0;
                loop {
                    let url = format!(
                        "{}/api/v2/list/goods/filter?limit=1000&offset={offset}",
                        self.settings.prices_url
                    );
                    let page: PricesResponse = self.call("prices", self.http.get(url)).await?;
                    let count = page.data.list_goods.len();
                    for goods in page.data.list_goods {
                        if let Some(size) = goods.sizes.first() {
                            prices.insert(goods.nm_id, size.discounted_price.unwrap_or(size.price));
                        }
                    }
                    if count < 1000 {
                        return Ok(prices);
                    }
                    offset += count;
                }
            })
            .await
    }
}

impl MarketplaceAdapter for WildberriesClient {
    async fn fetch_page(&self, cursor: Option<&str>) -> Result<Page, AdapterError> {
        let limit = self.settings.page_size;
        let mut cursor_body = json!({"limit": limit});
        if let Some(cursor) = cursor {
            let (nm_id, updated_at) = decode_cursor(cursor)
                .ok_or_else(|| AdapterError::Invalid("bad Wildberries cursor".into()))?;
            cursor_body = json!({"limit": limit, "nmID": nm_id, "updatedAt": updated_at});
        }
        let url = format!("{}/content/v2/get/cards/list", self.settings.content_url);
        let cards: CardsResponse = self
            .call(
                "content",
                self.http.post(url).json(&json!({
                    "settings": {"cursor": cursor_body, "filter": {"withPhoto": -1}}
                })),
            )
            .await?;
        let barcodes: Vec<&str> = cards
            .cards
            .iter()
            .flat_map(|card| {
                card.sizes
                    .iter()
                    .flat_map(|s| s.skus.iter().map(String::as_str))
            })
            .collect();
        let mut stock_by_barcode = HashMap::new();
        if !barcodes.is_empty() {
            let url = format!(
                "{}/api/v3/stocks/{}",
                self.settings.marketplace_url, self.settings.warehouse_id
            );
            let stocks: StocksResponse = self
                .call(
                    "marketplace",
                    self.http.post(url).json(&json!({"skus": barcodes})),
                )
                .await?;
            for stock in stocks.stocks {
                stock_by_barcode.insert(stock.sku, stock.amount);
            }
        }
        let prices = self.prices().await?;
        let listings = cards
            .cards
            .iter()
            .map(|card| {
                let stock: i64 = card
                    .sizes
                    .iter()
                    .flat_map(|s| s.skus.iter())
                    .map(|barcode| stock_by_barcode.get(barcode).copied().unwrap_or(0))
                    .sum();
                Listing {
                    sku: card.vendor_code.clone(),
                    name: if card.title.trim().is_empty() {
                        card.vendor_code.clone()
                    } else {
                        card.title.clone()
                    },
                    price: prices.get(&card.nm_id).copied().unwrap_or_default(),
                    stock: stock.clamp(0, i64::from(i32::MAX)) as i32,
                }
            })
            .collect();
        let next = match (&cards.cursor.updated_at, cards.cursor.nm_id) {
            (Some(updated_at), Some(nm_id)) if cards.cursor.total >= limit => {
                Some(encode_cursor(updated_at, nm_id))
            }
            _ => None,
        };
        Ok(Page { listings, next })
    }
}
