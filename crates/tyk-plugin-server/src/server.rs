//! Listeners and the gRPC server: the Dispatcher plus `grpc.health.v1` and
//! server reflection (v1 and v1alpha), over TCP and Unix sockets, with a
//! graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::service::Routes;
use tonic::transport::server::{Connected, TcpConnectInfo, UdsConnectInfo};

use h2_authority::AuthorityRepair;

use crate::config::{ListenAddr, ServerConfig, parse_mode, resolve};
use tyk_plugin::BoxFuture;

use crate::service::DispatcherService;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be created.
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// Another process already serves the Unix socket.
    #[error("cannot listen on unix://{0}: another process is listening on it")]
    UnixInUse(PathBuf),
    /// A file that is not a socket is in the way.
    #[error(
        "cannot listen on unix://{0}: the path exists and is not a socket; remove it or choose another path"
    )]
    NotASocket(PathBuf),
    /// The reflection service could not be built from the descriptors.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The HTTP/2 server failed.
    #[error("server error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// An address the server listens on, with the port the OS picked for `:0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundAddr {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp://{a}"),
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Listeners bound and ready; nothing is accepted until [`Bound::serve`].
pub struct Bound {
    listeners: Vec<Listener>,
    addrs: Vec<BoundAddr>,
    config: ServerConfig,
}

/// Binds every configured listener. Fails, leaving nothing bound, if any
/// of them cannot be created.
pub async fn bind(config: &ServerConfig) -> Result<Bound, ServeError> {
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for addr in &config.listen {
        match addr {
            ListenAddr::Tcp(hostport) => {
                let candidates = resolve(hostport).map_err(|e| ServeError::Bind {
                    addr: addr.to_string(),
                    source: io::Error::other(e),
                    hint: "",
                })?;
                for sa in candidates {
                    let l = TcpListener::bind(sa)
                        .await
                        .map_err(|source| ServeError::Bind {
                            addr: format!("tcp://{sa}"),
                            hint: bind_hint(&source),
                            source,
                        })?;
                    addrs.push(BoundAddr::Tcp(l.local_addr().unwrap_or(sa)));
                    listeners.push(Listener::Tcp(l));
                }
            }
            ListenAddr::Unix(path) => {
                let l = bind_unix(path, &config.unix_socket_mode).await?;
                addrs.push(BoundAddr::Unix(path.clone()));
                listeners.push(Listener::Unix(l, path.clone()));
            }
        }
    }
    Ok(Bound {
        listeners,
        addrs,
        config: config.clone(),
    })
}

fn bind_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            " (another process uses this address; stop it or choose another with --listen)"
        }
        io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need privileges; choose a higher port)"
        }
        io::ErrorKind::AddrNotAvailable => " (this host has no such address)",
        _ => "",
    }
}

async fn bind_unix(path: &Path, mode: &str) -> Result<UnixListener, ServeError> {
    let bind_err = |source: io::Error| ServeError::Bind {
        addr: format!("unix://{}", path.display()),
        hint: bind_hint(&source),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(ServeError::NotASocket(path.to_path_buf()));
            }
            // A socket file left by a server that died: nobody answers on it.
            if UnixStream::connect(path).await.is_ok() {
                return Err(ServeError::UnixInUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    if let Some(mode) = parse_mode(mode) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(bind_err)?;
    }
    Ok(listener)
}

/// An accepted connection, TCP or Unix.
pub enum Conn {
    /// TCP.
    Tcp(TcpStream),
    /// Unix socket.
    Unix(UnixStream),
}

/// Peer information of a [`Conn`].
#[derive(Debug, Clone)]
pub enum ConnInfo {
    /// TCP peer.
    Tcp(TcpConnectInfo),
    /// Unix peer.
    Unix(UdsConnectInfo),
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        match self {
            Conn::Tcp(s) => ConnInfo::Tcp(s.connect_info()),
            Conn::Unix(s) => ConnInfo::Unix(s.connect_info()),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Routes Dispatcher calls straight to the Dispatcher and everything else
/// (health, reflection) through tonic's router, keeping the router off the
/// hot path.
#[derive(Clone)]
struct Top {
    dispatcher: DispatcherService,
    others: Routes,
}

impl tower::Service<http::Request<Body>> for Top {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let path = req.uri().path();
        if path.len() > DISPATCHER_PREFIX.len() && path.starts_with(DISPATCHER_PREFIX) {
            self.dispatcher.call(req)
        } else {
            Box::pin(self.others.call(req))
        }
    }
}

const DISPATCHER_PREFIX: &str = "/coprocess.Dispatcher/";

impl Bound {
    /// The addresses actually bound (with OS-assigned ports).
    pub fn local_addrs(&self) -> &[BoundAddr] {
        &self.addrs
    }

    /// Serves until `shutdown` completes, then drains: health turns
    /// NOT_SERVING, listeners close, in-flight calls get
    /// `shutdown_grace_period` to finish.
    pub async fn serve(
        self,
        dispatcher: DispatcherService,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        for addr in &self.addrs {
            tracing::info!(address = %addr, "listening");
        }
        let (health, health_svc) = tonic_health::server::health_reporter();
        health.set_serving::<DispatcherService>().await;

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tyk_coprocess::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // Each version lists only its own reflection service; register both.
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
                .include_reflection_service(false)
        };
        let others = Routes::new(health_svc)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);
        let top = Top { dispatcher, others };

        let (stop_tx, stop_rx) = watch::channel(false);
        let (conn_tx, conn_rx) = mpsc::channel::<io::Result<AuthorityRepair<Conn>>>(64);
        let mut accept_tasks = Vec::new();
        for listener in self.listeners {
            accept_tasks.push(tokio::spawn(accept_loop(
                listener,
                conn_tx.clone(),
                stop_rx.clone(),
            )));
        }
        drop(conn_tx);

        let signal = {
            let health = health.clone();
            let stop_tx = stop_tx.clone();
            async move {
                shutdown.await;
                tracing::info!(
                    "shutting down: health NOT_SERVING, no new connections, draining in-flight calls"
                );
                health
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
                health.set_not_serving::<DispatcherService>().await;
                let _ = stop_tx.send(true);
            }
        };

        let c = &self.config;
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        let mut builder = tonic::transport::Server::builder()
            .max_concurrent_streams(c.max_concurrent_streams)
            .http2_keepalive_interval(nonzero(c.keepalive_interval))
            .http2_keepalive_timeout(Some(c.keepalive_timeout));
        if let Some(age) = nonzero(c.max_connection_age) {
            builder = builder.max_connection_age(age);
        }
        let serve = builder.serve_with_incoming_shutdown(top, ReceiverStream::new(conn_rx), signal);

        let grace = c.shutdown_grace_period;
        let mut stopped = stop_rx.clone();
        let deadline = async move {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        };
        let result = tokio::select! {
            r = serve => r.map_err(ServeError::from),
            () = deadline => {
                tracing::warn!(grace_period = ?grace, "shutdown grace period over; closing connections with calls still in flight");
                Ok(())
            }
        };
        let _ = stop_tx.send(true);
        for t in accept_tasks {
            let _ = t.await;
        }
        result
    }
}

async fn accept_loop(
    listener: Listener,
    tx: mpsc::Sender<io::Result<AuthorityRepair<Conn>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok(conn) => {
                // Gateways older than 5.8.3 send an empty :authority, which
                // h2 rejects; the adapter repairs such connections and costs
                // nothing on the others.
                if tx.send(Ok(AuthorityRepair::new(conn))).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: keep serving the
                // connections we have, try again shortly.
                tracing::error!(error = %e, "accept failed; retrying in 100ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    if let Listener::Unix(l, path) = listener {
        drop(l);
        let _ = std::fs::remove_file(&path);
    }
}

async fn accept(listener: &Listener) -> io::Result<Conn> {
    match listener {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            // Small unary calls: send each reply at once.
            let _ = s.set_nodelay(true);
            Ok(Conn::Tcp(s))
        }
        Listener::Unix(l, _) => Ok(Conn::Unix(l.accept().await?.0)),
    }
}
