//! warden-app
