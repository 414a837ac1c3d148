//! Health probes: basic, liveness (the process can serve) and readiness (its
//! dependencies answer). [`service`] runs the checks; [`routes`] serves them.

pub mod routes;
pub mod service;
