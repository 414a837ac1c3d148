//! Webhooks: a tenant's subscriptions to its events (`sync.completed`,
//! `sync.failed`, `stock.low`), each with a signing secret (Standard
//! Webhooks) stored encrypted, and URLs held to https on public addresses
//! ([`target`]), and their signed deliveries with retries ([`delivery`]).

pub mod delivery;
pub mod model;
pub mod repository;
pub mod routes;
pub mod service;
pub mod target;
pub mod tasks;
