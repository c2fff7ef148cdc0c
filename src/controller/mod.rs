//! The controllers. Each folder holds one: a driver (`mod.rs`) over pure decisions.

pub mod conditions;
pub mod linked_account;
