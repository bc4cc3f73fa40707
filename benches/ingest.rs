//! Ingest benchmarks (a placeholder until the registry lands).

fn main() {}
