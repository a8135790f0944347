//! Analyses of trained models.

pub mod cka;
