//! Shared generators for benchmarks.
