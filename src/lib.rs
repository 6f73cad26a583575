//! lifeboat: a disaster-recovery runbook engine.
//!
//! Runbooks are Rhai scripts whose steps are durable: every state change is journaled in an
//! embedded sled store, so a run survives a crash and `lifeboat resume` continues it without
//! repeating finished work.
//!
//! # Layout
//! - [`engine`]: runs a runbook against the journal (replay, steps, retries, timers, gates,
//!   parallel branches, the sandbox).
//! - [`journal`]: the durable record of every run; the only module that touches storage.
//! - [`control`]: the control API other terminals use while a process holds the store.
//! - [`mail`]: notifications over SMTP, waiting for OVH's confirmation email over IMAP.
//! - [`ovh`]: the OVHcloud API client (signing, typed calls, retries, task waits).
//! - [`sim`]: `lifeboat sim`, a local twin of the OVH API calls recoveries make.
//! - [`secret`]: credentials that never print.
//! - [`web`]: `lifeboat serve`, the war room: a live web page and HTTP API over a store.
//! - [`tls`]: HTTPS for lifeboat's servers (the simulator, the war room).
//! - [`twin`]: a simulator fixture read from a real account, for rehearsals.
//! - [`schedule`]: when the daemon starts plans and rehearsals (cron, time zones).
//! - [`report`]: run reports (steps, timings, RTO, changes made or planned).
//! - [`clock`]: time, passed in so tests and rehearsals can compress it.
//! - [`cli`]: the command line.
//! - [`error`]: the crate error and its exit-code policy.

pub mod cli;
pub mod clock;
pub mod control;
pub mod engine;
pub mod error;
pub mod journal;
pub mod mail;
pub mod ovh;
pub mod report;
pub mod schedule;
pub mod secret;
pub mod sim;
pub mod tls;
pub mod twin;
pub mod web;

pub use error::Error;
