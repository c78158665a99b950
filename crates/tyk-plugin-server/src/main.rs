//! `tyk-plugin-server`: the reference job done right. Logs every Object as
//! canonical proto3 JSON and returns it unchanged. See `--help`.

fn main() -> std::process::ExitCode {
    tyk_plugin_server::main_with(tyk_plugin::Echo)
}
