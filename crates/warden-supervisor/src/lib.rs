//! warden-supervisor
