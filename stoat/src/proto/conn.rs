//! Connection state machine (stub; being written).

/// Connection.
#[derive(Debug)]
pub struct Conn {}

/// Event.
#[derive(Debug)]
pub enum Event {}
