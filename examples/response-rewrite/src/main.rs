//! The response-rewrite example plugin as a server binary (all of tyk-plugin-server's
//! command line: `serve --listen ...`, `dispatch`, `check-config`).

fn main() -> std::process::ExitCode {
    tyk_plugin_server::main_with(example_response_rewrite::router())
}
