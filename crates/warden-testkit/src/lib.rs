//! warden-testkit
