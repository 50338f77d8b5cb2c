//! `postern-lab-node CONFIG.json`: runs one lab node (the transport
//! library's MTA with a static router) until killed. The benchmark starts
//! its Postern chain with it; tests re-execute their own binary instead.

fn main() -> std::process::ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: postern-lab-node CONFIG.json");
        return std::process::ExitCode::from(2);
    };
    let config = match std::fs::read_to_string(&path)
        .map_err(anyhow::Error::from)
        .and_then(|text| serde_json::from_str(&text).map_err(anyhow::Error::from))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postern-lab-node: {path}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match postern_tests::lab::run_lab_node(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern-lab-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
