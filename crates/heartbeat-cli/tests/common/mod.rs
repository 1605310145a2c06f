//! Helpers shared by the programs' test binaries.

use std::process::Command;

/// The program `name` of this crate, with no store URL from the
/// environment of the test run.
pub(crate) fn program(name: &str) -> Command {
    let path = match name {
        "heartbeat-collector" => env!("CARGO_BIN_EXE_heartbeat-collector"),
        _ => env!("CARGO_BIN_EXE_heartbeat-monitor"),
    };
    let mut command = Command::new(path);
    command.env_remove("PROCSYNC_FLEET_URL");
    command
}
