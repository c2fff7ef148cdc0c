//! The LinkedAccount controller.

pub mod verdict;
