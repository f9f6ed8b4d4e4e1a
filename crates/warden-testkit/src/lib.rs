//! A misbehaving MCP server for tests, benchmarks and the demo.
//!
//! It serves a handful of tools over stdio or Streamable HTTP and misbehaves on request: slow
//! start-up, latency with jitter, a latency ramp, random errors, a crash after N calls or T
//! seconds, a hang (stops answering everything), garbage on stdout, chatter on stderr, tool
//! lists that change at run time, and a grandchild process (to test process-group cleanup).
//! Over HTTP it speaks Streamable HTTP (`--http`) or the legacy HTTP+SSE transport (`--sse`).
//! With `--conformance` it also serves the tools, resources and prompts the official MCP
//! conformance suite calls (`scripts/conformance`).

pub mod cli;
mod conformance;
mod garbage;
pub mod postgres;
mod server;
mod sse;

pub use garbage::GarbageWriter;
pub use server::{Knobs, Misbehave};
