//! The one integration-test binary: every test drives the real `lifeboat` binary.

mod support;

mod cli_errors;
mod crash_resume;
mod daemon;
mod doctor;
mod engine_behaviour;
mod faults;
mod mail;
mod mail_tls;
mod modules;
mod outcomes;
mod ovh_client;
mod power_cut;
mod python_client;
mod recoveries;
mod runbooks;
mod shared_store;
mod sim_rules;
mod sim_tls;
mod undo;
mod web;
