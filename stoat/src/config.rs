//! Configuration (stub; being written).
