//! The bundled demo: three misbehaving servers run by Warden's own binary (`warden misbehave`),
//! so `warden run --demo` needs nothing beyond what the workspace builds.

use std::path::Path;

/// The demo config, with `exe` (this binary) as every server's command.
pub fn demo_config(exe: &Path) -> String {
    let exe = serde_json::to_string(&exe.display().to_string()).expect("a path serializes");
    format!(
        r#"{{
  "mcpServers": {{
    "steady": {{
      "command": {exe}, "args": ["misbehave", "--latency", "2ms", "--latency-jitter", "3ms"]
    }},
    "crashy": {{
      "command": {exe}, "args": ["misbehave", "--crash-after", "20s", "--exit-code", "3", "--stderr-every", "7s"]
    }},
    "flaky-pair": {{
      "command": {exe}, "args": ["misbehave", "--tools-change-every", "45s", "--garbage-every", "30s"],
      "replicas": 2
    }}
  }}
}}"#
    )
}
