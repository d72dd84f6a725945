//! The API a user of the library touches (being written).
