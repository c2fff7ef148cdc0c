//! account-linker: a Kubernetes operator that links many AWS accounts to one hub identity and
//! keeps every link verified.
#![forbid(unsafe_code)]

pub mod account_list;
pub mod api;
pub mod aws;
pub mod cli;
pub mod config;
pub mod controller;
#[cfg(feature = "failpoints")]
pub mod failpoints;
pub mod import_csv;
pub mod operator;
pub mod plugin;
pub mod policy;
pub mod reference;
pub mod runtime;
pub mod telemetry;
pub mod yaml;

/// Passes a crash point ([`failpoints`], test builds only): the argument is a point name or an
/// `Option` of one. Without the `failpoints` feature it expands to nothing, so release builds
/// neither evaluate the argument nor carry any point.
#[cfg(feature = "failpoints")]
#[macro_export]
macro_rules! failpoint {
    ($point:expr) => {
        $crate::failpoints::hit($point)
    };
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[macro_export]
macro_rules! failpoint {
    ($point:expr) => {};
}
