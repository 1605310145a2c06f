//! PostgreSQL (feature `postgres`): connecting to a server by URL.

mod connect;

pub use connect::{
    connect, DEFAULT_CONNECT_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT, DEFAULT_TCP_USER_TIMEOUT,
};
