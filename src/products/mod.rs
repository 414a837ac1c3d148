//! Products and their stock history: keyset-paginated lists with filters,
//! sort orders and trigram search, manual product edits, and reads cached
//! per tenant in Redis.

pub mod model;
pub mod money;
pub mod repository;
pub mod routes;
pub mod service;
