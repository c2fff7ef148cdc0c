//! The controllers. Each folder holds one: a driver (`mod.rs`) over pure decisions.

pub mod bulk_registration;
pub mod coalesce;
pub mod conditions;
pub mod events;
pub mod external_id;
pub mod hash_key;
pub mod link_cache;
pub mod linked_account;
pub mod member_account;
pub mod recorder;
pub mod runner;
pub mod status;
pub mod tenancy;
