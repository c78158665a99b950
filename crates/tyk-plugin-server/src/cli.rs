//! The command line: `serve` (default), `dispatch`, `dispatch-event`,
//! `check-config`. [`main_with`] runs it around any [`Dispatcher`], so a
//! plugin binary is a three-line `main`.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::client::{self, ObjectSpec};
use crate::config::{Config, ListenAddr, LogFormat, LogOutput, Overrides, Sources};
use crate::reqlog::RequestLog;
use crate::server;
use crate::service::DispatcherService;
use crate::sink::LogSink;
use bytes::Bytes;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tyk_coprocess::HookType;
use tyk_plugin::Dispatcher;

#[derive(Parser)]
#[command(
    name = "tyk-plugin-server",
    version,
    about = "A gRPC plugin server for the Tyk API Gateway"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Options of `serve`, the default command.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Send one Object to a running server's Dispatch and print the reply as JSON.
    Dispatch(DispatchArgs),
    /// Send one event payload to a running server's DispatchEvent.
    DispatchEvent(EventArgs),
    /// Validate a configuration file, print the effective configuration, exit.
    CheckConfig(CheckArgs),
}

#[derive(Args, Default)]
struct ServeArgs {
    /// Configuration file (TOML or YAML).
    #[arg(short, long, env = "TYK_PLUGIN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address: host:port, tcp://host:port or unix:///abs/path.sock.
    /// Repeat for several; replaces server.listen.
    #[arg(short, long, value_name = "ADDR")]
    listen: Vec<ListenAddr>,
    /// Log format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Log level or tracing filter (e.g. info, debug).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log destination: stdout, stderr or a file path.
    #[arg(long, value_name = "OUTPUT")]
    log_output: Option<LogOutput>,
}

#[derive(Args)]
struct DispatchArgs {
    #[command(flatten)]
    target: Target,
    /// An Object as proto3 JSON (a file, or - for stdin). Without it the
    /// Object is built from the flags below, the way the gateway builds it.
    #[arg(value_name = "FILE")]
    input: Option<String>,
    /// Hook type: pre, post, post_key_auth, custom_key_check or response.
    #[arg(long, default_value = "pre", value_parser = parse_hook_type)]
    hook_type: HookType,
    /// Hook name (the `name` in the API's custom_middleware).
    #[arg(long, default_value = "")]
    hook_name: String,
    /// HTTP method.
    #[arg(short = 'X', long, default_value = "GET")]
    method: String,
    /// Request URL: path and query.
    #[arg(long, default_value = "/")]
    url: String,
    /// Request header, "Name: value"; repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Request body; @FILE reads a file.
    #[arg(short, long)]
    body: Option<String>,
    /// API ID (spec.APIID).
    #[arg(long, default_value = "")]
    api_id: String,
    /// Organisation ID (spec.OrgID).
    #[arg(long, default_value = "")]
    org_id: String,
    /// The API's config_data as JSON (spec.config_data).
    #[arg(long)]
    config_data: Option<String>,
    /// Upstream status for a response hook.
    #[arg(long, default_value_t = 200)]
    status: i32,
    /// Print compact JSON instead of indented.
    #[arg(long)]
    compact: bool,
}

#[derive(Args)]
struct EventArgs {
    #[command(flatten)]
    target: Target,
    /// The payload (a file, or - for stdin); default: a sample AuthFailure event.
    #[arg(value_name = "FILE", conflicts_with = "payload")]
    input: Option<String>,
    /// The payload given inline.
    #[arg(short, long)]
    payload: Option<String>,
}

/// Where the client commands send to.
#[derive(Args)]
struct Target {
    /// Server address: host:port, tcp://host:port or unix:///path.sock.
    #[arg(
        short = 't',
        long = "target",
        env = "TYK_PLUGIN_TARGET",
        default_value = "tcp://127.0.0.1:50051"
    )]
    addr: String,
}

#[derive(Args)]
struct CheckArgs {
    /// The file to check; without it, the embedded defaults.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// Also apply TYK_PLUGIN_* environment variables, as `serve` does.
    #[arg(long)]
    env: bool,
}

fn parse_hook_type(s: &str) -> Result<HookType, String> {
    let norm: String = s
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_lowercase();
    Ok(match norm.as_str() {
        "pre" => HookType::Pre,
        "post" => HookType::Post,
        "postkeyauth" => HookType::PostKeyAuth,
        "customkeycheck" | "auth" | "authcheck" => HookType::CustomKeyCheck,
        "response" => HookType::Response,
        _ => {
            return Err(format!(
                "{s:?}: use pre, post, post_key_auth, custom_key_check or response"
            ));
        }
    })
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: a header is written \"Name: value\""))?;
    if k.trim().is_empty() {
        return Err(format!("{s:?}: the header name is empty"));
    }
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// Runs the command line with `dispatcher` handling every Dispatch and
/// DispatchEvent call of `serve`; returns the process exit code.
///
/// ```no_run
/// use tyk_plugin::{Request, Router};
///
/// async fn add_header(mut req: Request) -> Request {
///     req.set_header("X-Plugin", "mine");
///     req
/// }
///
/// fn main() -> std::process::ExitCode {
///     tyk_plugin_server::main_with(Router::new().pre("AddHeader", add_header))
/// }
/// ```
pub fn main_with(dispatcher: impl Dispatcher) -> ExitCode {
    // Help and errors name the binary the user runs.
    let name = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "tyk-plugin-server".into());
    let matches = Cli::command().name(name).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        None => serve(cli.serve, dispatcher),
        Some(Command::Serve(args)) => serve(args, dispatcher),
        Some(Command::Dispatch(args)) => with_runtime(dispatch(args)),
        Some(Command::DispatchEvent(args)) => with_runtime(dispatch_event(args)),
        Some(Command::CheckConfig(args)) => check_config(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn with_runtime(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

fn check_config(args: CheckArgs) -> anyhow::Result<()> {
    let config = Config::load(Sources {
        file: args.file.as_deref(),
        env: args.env,
        overrides: Overrides::default(),
    })?;
    let name = args
        .file
        .as_ref()
        .map_or("embedded defaults".to_string(), |p| p.display().to_string());
    println!(
        "# {name}: OK. Effective configuration:\n{}",
        config.to_toml()
    );
    Ok(())
}

fn serve(args: ServeArgs, dispatcher: impl Dispatcher) -> anyhow::Result<()> {
    let config = Config::load(Sources {
        file: args.config.as_deref(),
        env: true,
        overrides: Overrides {
            listen: args.listen,
            log_format: args.log_format,
            log_level: args.log_level,
            log_output: args.log_output,
        },
    })?;

    let out: Box<dyn Write + Send> = match &config.log.output {
        LogOutput::Stdout => Box::new(std::io::stdout()),
        LogOutput::Stderr => Box::new(std::io::stderr()),
        LogOutput::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?,
        ),
    };
    let (sink, sink_guard) =
        LogSink::spawn(out, config.log.queue_capacity.as_usize(), config.log.format)?;
    init_tracing(&config, sink.clone());

    let objects =
        config.log.objects && tracing::enabled!(target: "crate::dispatch", tracing::Level::INFO);
    let events =
        config.log.events && tracing::enabled!(target: "crate::event", tracing::Level::INFO);
    let log = RequestLog::new(sink, config.log.format, objects, events);

    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut rt = if workers == 1 {
        // One core: the single-threaded scheduler skips the work-stealing
        // one's cross-thread wake-ups (~20% more calls/s, BENCHMARKS.md).
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        rt.worker_threads(workers);
        rt
    };
    let rt = rt.enable_all().thread_name("tyk-plugin-server").build()?;
    let flavor = rt.handle().runtime_flavor();
    tracing::info!(workers, runtime = ?flavor, "runtime started");
    let result = rt.block_on(async {
        let bound = server::bind(&config.server).await?;
        let dispatcher = DispatcherService::new(
            dispatcher,
            log,
            config.server.max_recv_message_size.as_usize(),
            config.server.max_send_message_size.as_usize(),
        );
        bound.serve(dispatcher, shutdown_signal()).await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    });
    if let Err(e) = &result {
        tracing::error!(error = %e, "server failed");
    }
    drop(rt);
    sink_guard.shutdown();
    result
}

fn init_tracing(config: &Config, sink: LogSink) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.is_empty())
        .and_then(|s| EnvFilter::builder().parse(s).ok())
        .unwrap_or_else(|| EnvFilter::builder().parse_lossy(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink);
    let ansi = matches!(config.log.output, LogOutput::Stdout) && std::io::stdout().is_terminal()
        || matches!(config.log.output, LogOutput::Stderr) && std::io::stderr().is_terminal();
    let _ = match config.log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
    };
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

fn read_input(input: &str) -> anyhow::Result<Vec<u8>> {
    if input == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(input).map_err(|e| anyhow::anyhow!("cannot read {input}: {e}"))
    }
}

async fn dispatch(args: DispatchArgs) -> anyhow::Result<()> {
    let object: Bytes = match &args.input {
        Some(input) => {
            let text = String::from_utf8(read_input(input)?)
                .map_err(|_| anyhow::anyhow!("{input} is not UTF-8 text"))?;
            client::object_from_json(&text)?
        }
        None => {
            let body = match &args.body {
                Some(b) => match b.strip_prefix('@') {
                    Some(path) => read_input(path)?,
                    None => b.clone().into_bytes(),
                },
                None => Vec::new(),
            };
            let spec = ObjectSpec {
                hook_type: args.hook_type,
                hook_name: args.hook_name.clone(),
                method: args.method.clone(),
                url: args.url.clone(),
                headers: args.headers.clone(),
                body,
                api_id: args.api_id.clone(),
                org_id: args.org_id.clone(),
                config_data: args.config_data.clone(),
                response_status: args.status,
            };
            Bytes::from(prost::Message::encode_to_vec(&spec.build()))
        }
    };
    let channel = client::connect(&args.target.addr).await?;
    let reply = client::dispatch_raw(channel, object.clone()).await?;
    let style = if args.compact {
        tyk_coprocess::json::JsonStyle::Compact
    } else {
        tyk_coprocess::json::JsonStyle::Pretty
    };
    let mut out = Vec::with_capacity(reply.len() * 2);
    tyk_coprocess::json::object_to_json(&reply, style, &mut out)
        .map_err(|e| anyhow::anyhow!("the reply is not a valid Object: {e}"))?;
    out.push(b'\n');
    std::io::stdout().write_all(&out)?;
    if reply == object {
        eprintln!("(the reply is byte-for-byte the Object sent)");
    }
    Ok(())
}

/// A sample event payload shaped like the gateway's AuthFailure event.
const SAMPLE_EVENT: &str = r#"{"message":{"Type":"AuthFailure","Meta":{"Message":"Auth Failure","OriginatingRequest":"","Path":"/petstore/pet/1","Origin":"127.0.0.1","Key":"invalid-key"},"TimeStamp":"2026-11-23 12:00:00.000000000 +0000 UTC"},"handler_name":"my_handler","spec":{"APIID":"petstore","OrgID":"default"}}"#;

async fn dispatch_event(args: EventArgs) -> anyhow::Result<()> {
    let payload = match (&args.payload, &args.input) {
        (Some(p), _) => p.clone(),
        (None, Some(input)) => String::from_utf8(read_input(input)?)
            .map_err(|_| anyhow::anyhow!("{input} is not UTF-8 text"))?,
        (None, None) => SAMPLE_EVENT.to_string(),
    };
    let channel = client::connect(&args.target.addr).await?;
    client::dispatch_event(channel, payload).await?;
    println!("EventReply received");
    Ok(())
}
