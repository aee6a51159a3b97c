//! Structure-aware mutation fuzzing of compress's parsers on stable Rust (dev only).
//!
//! Each target ([`targets`]) builds seed inputs in-process and feeds bytes to a real parser
//! entry point; [`runner`] mutates the seeds ([`mutate`] byte-level, [`structured`]
//! value-level for JSON/TOML), catches panics, times each case and measures its largest single
//! allocation and peak live bytes through the counting allocator ([`alloc`]), which this crate
//! installs as the global allocator of everything linking it (its tests and `fuzz` binary).
//! A case fails when it panics, allocates more than `max(2 × input length, floor)` at once,
//! or runs past the time limit; failing inputs land in `target/fuzz-failures/<target>/`.

#![warn(missing_docs)]

pub mod alloc;
pub mod failure;
pub mod mutate;
pub mod paths;
pub mod runner;
pub mod structured;
pub mod targets;
pub mod watchdog;

#[global_allocator]
static GLOBAL: alloc::CountingAlloc = alloc::CountingAlloc;
