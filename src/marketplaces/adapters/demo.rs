//! The demo marketplace: a deterministic simulator, the default for demos
//! and tests. A connection always lists the same products (SKUs, names,
//! prices derived from its id); stock levels depend on the sync round — one
//! product in three changes from one successful sync to the next — so
//! repeated syncs exercise stock history and low-stock events.

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{AdapterError, Listing, MarketplaceAdapter, Page};

pub struct DemoMarketplace {
    connection_id: Uuid,
    products: u32,
    page_size: u32,
    round: u64,
}

impl DemoMarketplace {
    /// `round`: how many syncs of this connection have succeeded before.
    pub fn new(connection_id: Uuid, products: u32, page_size: u32, round: u64) -> Self {
        Self {
            connection_id,
            products,
            page_size: page_size.max(1),
            round,
        }
    }

    /// A stable pseudo-random number for (connection, product, salt).
    fn hash(&self, index: u32, salt: u64) -> u64 {
        let mut hasher = Sha256::new();
        hasher.update(self.connection_id.as_bytes());
        hasher.update(index.to_le_bytes());
        hasher.update(salt.to_le_bytes());
        let digest = hasher.finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    pub fn listing(&self, index: u32) -> Listing {
        // A product's stock moves only in the rounds where it is due to.
        let changes_in = |round: u64| self.hash(index, 0).wrapping_add(round).is_multiple_of(3);
        let last_change = (0..=self.round).rev().find(|r| changes_in(*r)).unwrap_or(0);
        let stock = (self.hash(index, 1_000 + last_change) % 60) as i32;
        let cents = 199 + self.hash(index, 2) % 99_800;
        Listing {
            sku: format!("DEMO-{index:06}"),
            name: format!("Demo product {index}"),
            price: Decimal::new(cents as i64, 2),
            stock,
        }
    }
}

impl MarketplaceAdapter for DemoMarketplace {
    async fn fetch_page(&self, cursor: Option<&str>) -> Result<Page, AdapterError> {
        let start: u32 = match cursor {
            None => 0,
            Some(cursor) => cursor
                .parse()
                .map_err(|_| AdapterError::Invalid(format!("bad demo cursor {cursor}")))?,
        };
        let end = (start + self.page_size).min(self.products);
        Ok(Page {
            listings: (start..end).map(|index| self.listing(index)).collect(),
            next: (end < self.products).then(|| end.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_connection_lists_the_same_catalogue() {
        let id = Uuid::from_u128(42);
        let a = DemoMarketplace::new(id, 25, 10, 0);
        let b = DemoMarketplace::new(id, 25, 10, 0);
        let mut cursor = None;
        let mut seen = 0;
        loop {
            let page = a.fetch_page(cursor.as_deref()).await.unwrap();
            assert_eq!(
                page.listings,
                b.fetch_page(cursor.as_deref()).await.unwrap().listings
            );
            seen += page.listings.len();
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, 25);
    }

    #[test]
    fn about_a_third_of_the_stock_changes_between_rounds() {
        let id = Uuid::from_u128(7);
        let before = DemoMarketplace::new(id, 300, 100, 0);
        let after = DemoMarketplace::new(id, 300, 100, 1);
        let changed = (0..300)
            .filter(|i| before.listing(*i).stock != after.listing(*i).stock)
            .count();
        assert!((60..=110).contains(&changed), "{changed}");
        // Names and prices never change.
        assert!((0..300).all(|i| before.listing(i).price == after.listing(i).price));
    }
}
