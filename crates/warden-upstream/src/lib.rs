//! warden-upstream
