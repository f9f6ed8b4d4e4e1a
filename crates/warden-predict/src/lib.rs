//! Failure prediction for one instance, pure and deterministic: no I/O, no clock, no tasks.
//! The caller feeds samples with explicit times (seconds since any origin, as `f64`) and asks
//! for an [`Assessment`].
//!
//! - **Drift** (⇒ `warning`): a one-sided CUSUM (k = 0.5σ, h = 9σ, input clipped at 4σ) on
//!   10 s batch means of log latency and of the failure ratio, standardized by a baseline of
//!   the trailing 30 minutes (Winsorized mean and long-run σ of batch means; frozen while an
//!   alarm is raised).
//! - **Predicted failure** (⇒ `PredictedFailure`): Holt's linear smoothing (sf 0.1, tf 0.025
//!   per second) of log latency (forecast errors clipped at 2σ, so a stall is not a trend) and
//!   of the batch failure ratio, raised when the forecast crosses the hard limit (call
//!   timeout, breaker threshold) within 120 s while the level is ≥ 4σ above the baseline, both
//!   for 5 s (20 s for errors).
//! - **RSS exhaustion**: a least squares line through 10 minutes of RSS that reaches the
//!   memory limit within 10 minutes.
//!
//! Nothing but the RSS forecast alarms before the warm-up (10 minutes and 30 batches) unless
//! the instance was given a [`Seed`] (the baselines another instance of the same server
//! learnt), which arms it at once; nothing alarms on a single sample. The defaults are the research notes' (§7, §10.8) except where
//! [`PredictorConfig`] says why not; the measured lead times and false alarm rates are in
//! `docs/benchmarks.md` (`warden-bench --only predict`).
//!
//! The caller keeps one [`InstancePredictor`] per instance, feeds it every probe and call
//! (`observe_latency`, `observe_outcome`) and RSS sample (`observe_rss`), calls
//! [`InstancePredictor::restart`] when the process is replaced, and reads
//! [`InstancePredictor::evaluate`] as often as it likes.

mod assessment;
mod baseline;
mod config;
mod cusum;
mod errors;
mod hold;
mod holt;
mod latency;
mod learning;
mod predictor;
mod rss;
mod seed;

pub use assessment::{Assessment, Drift, Exhaustion, Prediction, Signal};
pub use config::{Limits, PredictorConfig};
pub use predictor::InstancePredictor;
pub use seed::{ErrorSeed, LatencySeed, Seed};

#[cfg(test)]
mod tests;
