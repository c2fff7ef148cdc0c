//! account-linker: a Kubernetes operator that links many AWS accounts to one hub identity and
//! keeps every link verified.
#![forbid(unsafe_code)]

pub mod account_list;
pub mod api;
pub mod aws;
pub mod cli;
pub mod config;
pub mod controller;
pub mod import_csv;
pub mod operator;
pub mod plugin;
pub mod policy;
pub mod reference;
pub mod runtime;
pub mod telemetry;
pub mod yaml;
