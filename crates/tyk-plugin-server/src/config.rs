//! Configuration: an embedded default file, an optional TOML/YAML file,
//! `TYK_PLUGIN_*` environment variables and command-line flags, merged in that
//! order and validated before anything is bound or opened.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml, Yaml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The embedded default configuration; it documents every key.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/default.toml");

/// Prefix of configuration environment variables. Sections are separated by a
/// double underscore: `TYK_PLUGIN_LOG__FORMAT=json`.
pub const ENV_PREFIX: &str = "TYK_PLUGIN_";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and gRPC/HTTP/2 settings.
    pub server: ServerConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[server]`: listeners and transport settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to listen on.
    #[serde(deserialize_with = "one_or_many")]
    pub listen: Vec<ListenAddr>,
    /// Largest message accepted.
    pub max_recv_message_size: ByteSize,
    /// Largest message sent.
    pub max_send_message_size: ByteSize,
    /// HTTP/2 streams allowed per connection.
    pub max_concurrent_streams: u32,
    /// Connection lifetime; zero means unlimited.
    #[serde(with = "duration")]
    pub max_connection_age: Duration,
    /// HTTP/2 keepalive PING interval; zero disables it.
    #[serde(with = "duration")]
    pub keepalive_interval: Duration,
    /// How long to wait for a keepalive PING acknowledgement.
    #[serde(with = "duration")]
    pub keepalive_timeout: Duration,
    /// Time in-flight calls get to finish on shutdown.
    #[serde(with = "duration")]
    pub shutdown_grace_period: Duration,
    /// Octal permissions of Unix socket files; empty leaves them alone.
    pub unix_socket_mode: String,
    /// Runtime worker threads; 0 picks one per available CPU.
    pub workers: usize,
}

/// `[log]`: diagnostics and the per-request Object log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Level or tracing filter directive.
    pub level: String,
    /// Log each Dispatch Object.
    pub objects: bool,
    /// Log each event payload.
    pub events: bool,
    /// Where logs go.
    pub output: LogOutput,
    /// Bytes of log records that may wait for the writer.
    pub queue_capacity: ByteSize,
}

/// Log record format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; Objects as indented JSON.
    Text,
    /// One JSON object per line.
    Json,
}

/// Log destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

impl FromStr for LogOutput {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stdout" | "-" => Ok(Self::Stdout),
            "stderr" => Ok(Self::Stderr),
            "" => Err("log output must be stdout, stderr or a file path".into()),
            path => Ok(Self::File(PathBuf::from(path))),
        }
    }
}

impl fmt::Display for LogOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::Stderr => f.write_str("stderr"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A listen address: TCP `host:port` or a Unix socket path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// `host:port` (resolved when the configuration is validated).
    Tcp(String),
    /// An absolute socket path.
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{s:?}: a Unix socket address needs an absolute path, written unix:///path/to.sock"
                ));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let hostport = s.strip_prefix("tcp://").unwrap_or(s);
        if hostport.contains("://") {
            return Err(format!(
                "{s:?}: unsupported scheme; use host:port, tcp://host:port or unix:///path.sock"
            ));
        }
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(hostport.to_string()))
            }
            _ => Err(format!(
                "{s:?}: expected host:port (e.g. 127.0.0.1:50051), tcp://host:port or unix:///path.sock"
            )),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp://{a}"),
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// A size in bytes, written as a number or with a unit (`"100MiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("{s:?}: expected a size such as 4194304, \"64KiB\" or \"100MiB\"")
        })?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            u => {
                return Err(format!(
                    "{s:?}: unknown unit {u:?}; use B, KB, MB, GB, KiB, MiB or GiB"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?}: too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= size && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}B")
    }
}

impl ByteSize {
    /// The size as `usize`, saturating.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = StrOrNum::deserialize(d)?;
                v.0.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(ByteSize);
string_serde!(ListenAddr);
string_serde!(LogOutput);

/// Accepts a string or a number, as text (env values arrive typed by figment).
struct StrOrNum(String);

impl<'de> Deserialize<'de> for StrOrNum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            U(u64),
            I(i64),
        }
        Ok(StrOrNum(match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::U(n) => n.to_string(),
            Raw::I(n) => n.to_string(),
        }))
    }
}

/// A list written as a list, or as one comma-separated string (handy in env vars).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ListenAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    let items = match Raw::deserialize(d)? {
        Raw::One(s) => s.split(',').map(str::to_string).collect(),
        Raw::Many(v) => v,
    };
    items
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

mod duration {
    use super::*;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = StrOrNum::deserialize(d)?;
        if v.0.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom(format!(
                "{:?}: a duration needs a unit, e.g. \"30s\", \"500ms\" or \"5m\"",
                v.0
            )));
        }
        humantime::parse_duration(&v.0)
            .map_err(|e| serde::de::Error::custom(format!("{:?}: {e}", v.0)))
    }
}

/// Command-line values that override the configuration. `None` leaves a key
/// to the lower layers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen`, replacing `server.listen` when non-empty.
    #[serde(skip)]
    pub listen: Vec<ListenAddr>,
    /// `--log-format`.
    #[serde(skip)]
    pub log_format: Option<LogFormat>,
    /// `--log-level`.
    #[serde(skip)]
    pub log_level: Option<String>,
    /// `--log-output`.
    #[serde(skip)]
    pub log_output: Option<LogOutput>,
}

impl Overrides {
    fn into_value(self) -> serde_json::Value {
        let mut server = serde_json::Map::new();
        let mut log = serde_json::Map::new();
        if !self.listen.is_empty() {
            let list = self.listen.iter().map(|a| a.to_string().into()).collect();
            server.insert("listen".into(), serde_json::Value::Array(list));
        }
        if let Some(f) = self.log_format {
            log.insert("format".into(), serde_json::to_value(f).unwrap_or_default());
        }
        if let Some(l) = self.log_level {
            log.insert("level".into(), l.into());
        }
        if let Some(o) = self.log_output {
            log.insert("output".into(), o.to_string().into());
        }
        serde_json::json!({ "server": server, "log": log })
    }
}

/// Errors found while loading or validating the configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file does not exist or cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file with an extension other than toml/yaml/yml.
    #[error("config file {0} must end in .toml, .yaml or .yml")]
    Extension(PathBuf),
    /// A value has the wrong type or format, or a key is unknown; names the
    /// key and where the value came from.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// The values parse but cannot work together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // figment errors name the key path and the source (file, env var).
        let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        ConfigError::Parse(msgs.join("; "))
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources<'a> {
    /// `--config FILE`.
    pub file: Option<&'a Path>,
    /// Whether `TYK_PLUGIN_*` environment variables apply.
    pub env: bool,
    /// Command-line overrides.
    pub overrides: Overrides,
}

impl Config {
    /// Loads and validates the configuration from its sources.
    pub fn load(sources: Sources<'_>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(path) = sources.file {
            std::fs::metadata(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            fig = match path.extension().and_then(|e| e.to_str()) {
                Some("toml") => fig.merge(Toml::file_exact(path)),
                Some("yaml" | "yml") => fig.merge(Yaml::file_exact(path)),
                _ => return Err(ConfigError::Extension(path.to_path_buf())),
            };
        }
        if sources.env {
            fig = fig.merge(Env::prefixed(ENV_PREFIX).ignore(&["config"]).split("__"));
        }
        fig = fig.merge(Serialized::defaults(sources.overrides.into_value()));
        let config: Config = fig.extract()?;
        config.validate()?;
        Ok(config)
    }

    /// The embedded defaults alone.
    pub fn defaults() -> Config {
        Figment::from(Toml::string(DEFAULT_CONFIG))
            .extract()
            .expect("the embedded default configuration is valid")
    }

    /// Checks what types alone cannot: limits, addresses, paths.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if s.listen.is_empty() {
            return bad("server.listen is empty: give at least one address".into());
        }
        for (i, a) in s.listen.iter().enumerate() {
            if s.listen[..i].contains(a) {
                return bad(format!("server.listen names {a} twice"));
            }
            match a {
                ListenAddr::Tcp(hp) => {
                    resolve(hp).map_err(ConfigError::Invalid)?;
                }
                ListenAddr::Unix(p) => {
                    let dir = p.parent().unwrap_or(Path::new("/"));
                    if !dir.is_dir() {
                        return bad(format!(
                            "server.listen: directory {} of Unix socket {} does not exist",
                            dir.display(),
                            p.display()
                        ));
                    }
                }
            }
        }
        // The gRPC length prefix is 32 bits.
        for (key, size) in [
            ("server.max_recv_message_size", s.max_recv_message_size),
            ("server.max_send_message_size", s.max_send_message_size),
        ] {
            if size.0 == 0 || size.0 > u64::from(u32::MAX) {
                return bad(format!("{key} = {size} must be between 1B and 4GiB"));
            }
        }
        if s.max_concurrent_streams == 0 {
            return bad("server.max_concurrent_streams must be at least 1".into());
        }
        if !s.keepalive_interval.is_zero() && s.keepalive_timeout.is_zero() {
            return bad(
                "server.keepalive_timeout must be non-zero when keepalive_interval is set".into(),
            );
        }
        if !s.unix_socket_mode.is_empty() && parse_mode(&s.unix_socket_mode).is_none() {
            return bad(format!(
                "server.unix_socket_mode = {:?} is not an octal mode such as \"0660\"",
                s.unix_socket_mode
            ));
        }
        if s.workers > 1024 {
            return bad(format!("server.workers = {} is more than 1024", s.workers));
        }
        let l = &self.log;
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&l.level) {
            return bad(format!("log.level = {:?}: {e}", l.level));
        }
        if let LogOutput::File(p) = &l.output {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return bad(format!(
                    "log.output: directory {} of log file {} does not exist",
                    dir.display(),
                    p.display()
                ));
            }
        }
        if l.queue_capacity.0 < 4096 {
            return bad(format!(
                "log.queue_capacity = {} is below 4KiB",
                l.queue_capacity
            ));
        }
        Ok(())
    }

    /// The configuration as TOML, as `check-config` prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Parses an octal file mode.
pub fn parse_mode(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

/// Resolves `host:port` to socket addresses.
pub fn resolve(hostport: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .map_err(|e| format!("server.listen: cannot resolve {hostport:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "server.listen: {hostport:?} resolves to no address"
        ));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load(Sources {
            file: Some(&path),
            ..Default::default()
        })
    }

    #[test]
    fn embedded_defaults_are_valid_and_documented() {
        let c = Config::defaults();
        c.validate().unwrap();
        assert_eq!(
            c.server.listen,
            vec![ListenAddr::Tcp("127.0.0.1:50051".into())]
        );
        assert_eq!(c.server.max_recv_message_size, ByteSize(100 << 20));
        assert_eq!(c.log.format, LogFormat::Text);
        // Every key in the struct appears in the default file (so it is documented).
        let rendered: toml::Table = toml::from_str(&c.to_toml()).unwrap();
        let embedded: toml::Table = toml::from_str(DEFAULT_CONFIG).unwrap();
        for (section, keys) in &rendered {
            for key in keys.as_table().unwrap().keys() {
                assert!(
                    embedded[section].as_table().unwrap().contains_key(key),
                    "{section}.{key} missing from config/default.toml"
                );
            }
        }
    }

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            "127.0.0.1:1".parse(),
            Ok(ListenAddr::Tcp("127.0.0.1:1".into()))
        );
        assert_eq!(
            "tcp://[::1]:5".parse(),
            Ok(ListenAddr::Tcp("[::1]:5".into()))
        );
        assert_eq!(
            "unix:///run/p.sock".parse(),
            Ok(ListenAddr::Unix("/run/p.sock".into()))
        );
        for bad in [
            "unix://rel.sock",
            "127.0.0.1",
            ":80",
            "dns:///x:1",
            "h:99999",
        ] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!("100MiB".parse(), Ok(ByteSize(104_857_600)));
        assert_eq!("100 MB".parse(), Ok(ByteSize(100_000_000)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert!("12XB".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(100 << 20).to_string(), "100MiB");
    }

    #[test]
    fn file_values_override_defaults_and_yaml_works() {
        let c =
            load_str("[log]\nformat = \"json\"\n[server]\nmax_recv_message_size = 1024\n").unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.server.max_recv_message_size, ByteSize(1024));
        assert_eq!(c.log.level, "info");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "server:\n  listen: [\"tcp://127.0.0.1:7000\"]\n").unwrap();
        let c = Config::load(Sources {
            file: Some(&path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.server.listen,
            vec![ListenAddr::Tcp("127.0.0.1:7000".into())]
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = load_str("[log]\nformat = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("format"), "{e}");
        let e = load_str("[server]\nlistenn = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listenn"), "{e}");
        let e = load_str("[server]\nmax_recv_message_size = \"5GiB\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.max_recv_message_size"), "{e}");
        let e = load_str("[server]\nshutdown_grace_period = 30\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a unit"), "{e}");
        let e = load_str("[server]\nlisten = \"unix:///nonexistent-dir/x.sock\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        let e = load_str("[log]\nlevel = \"info,=[\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.level"), "{e}");
        assert!(matches!(
            Config::load(Sources {
                file: Some(Path::new("/nonexistent.toml")),
                ..Default::default()
            }),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure signature
    fn flags_beat_env_beat_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[log]\nformat = \"json\"\nlevel = \"debug\"\noutput = \"stderr\"\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("TYK_PLUGIN_LOG__LEVEL", "warn");
            jail.set_env("TYK_PLUGIN_LOG__OUTPUT", "stdout");
            jail.set_env("TYK_PLUGIN_SERVER__LISTEN", "tcp://127.0.0.1:1,127.0.0.1:2");
            let c = Config::load(Sources {
                file: Some(&path),
                env: true,
                overrides: Overrides {
                    log_output: Some(LogOutput::Stderr),
                    ..Default::default()
                },
            })
            .map_err(|e| e.to_string())?;
            assert_eq!(c.log.format, LogFormat::Json); // file
            assert_eq!(c.log.level, "warn"); // env over file
            assert_eq!(c.log.output, LogOutput::Stderr); // flag over env
            assert_eq!(c.server.listen.len(), 2); // comma-separated env list
            jail.set_env("TYK_PLUGIN_LOG__FROMAT", "json");
            let e = Config::load(Sources {
                env: true,
                ..Default::default()
            })
            .unwrap_err();
            assert!(e.to_string().contains("fromat"), "{e}");
            Ok(())
        });
    }
}
