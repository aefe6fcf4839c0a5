//! The HTTP server's defences against slow and greedy clients (issue 16, item 3): without them a client
//! that never finishes its headers holds its connection (and its task) for ever, and one address can open
//! as many connections as the process has descriptors.
//!
//! - **Header-read timeout** (`BONSAI__HTTP__HEADER_READ_TIMEOUT_SECS`): a request's headers must arrive
//!   whole within it (hyper's HTTP/1 timer; it also closes a kept-alive connection that sends no next
//!   request in time). Until a connection's first byte, the same limit applies, so a client that connects
//!   and says nothing (or stalls its TLS handshake) is let go as soon.
//! - **Idle timeout** (`BONSAI__HTTP__IDLE_TIMEOUT_SECS`): a connection on which no byte moves either way
//!   for that long is closed, whatever it is doing (a request body trickling in, an HTTP/2 connection, a
//!   WebSocket: event streams and WebSockets send a keep-alive every 15 s, question waits last at most
//!   120 s, so the default of 300 s cuts none of them).
//! - **Connections per client address** (`BONSAI__HTTP__MAX_CONNECTIONS_PER_ADDRESS`): the next one is
//!   closed at once, before any TLS handshake; other addresses are served as before.
//!
//! `axum::serve` sets none of these (it gives hyper no timer), so this is its loop with them: hyper's
//! automatic HTTP/1.1 or HTTP/2 connection, upgrades (WebSockets) and a graceful shutdown that lets
//! requests in flight finish.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// The limits of [`serve`] (see the module's comment).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// 0: no cap.
    pub max_connections_per_address: usize,
}

/// Open connections per client address, and the limits each is held to.
#[derive(Clone)]
pub struct Guard {
    limits: Limits,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// Not capped: every client behind them shares their address.
    proxies: bonsai_api::TrustedProxies,
}

impl Guard {
    pub fn new(limits: Limits) -> Self {
        Self { limits, open: Arc::default(), proxies: bonsai_api::TrustedProxies::default() }
    }

    /// Does not cap connections from these proxies.
    pub fn with_trusted_proxies(mut self, proxies: bonsai_api::TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// `tcp` from `addr`, held to the limits; none (the connection is closed) when `addr` already has as
    /// many connections open as it may.
    pub fn admit(&self, tcp: TcpStream, addr: SocketAddr) -> Option<Guarded<TcpStream>> {
        let ip = addr.ip();
        {
            let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let count = open.entry(ip).or_insert(0);
            let capped = self.limits.max_connections_per_address > 0 && !self.proxies.trusts(ip);
            if capped && *count >= self.limits.max_connections_per_address {
                tracing::info!(%addr, open = *count, "connection refused: too many from this address");
                return None;
            }
            *count += 1;
        }
        let slot = Slot { ip, open: self.open.clone() };
        let deadline = Box::pin(tokio::time::sleep(self.limits.header_read_timeout));
        Some(Guarded { io: tcp, deadline, idle: self.limits.idle_timeout, heard: false, _slot: slot })
    }
}

/// One connection's place in its address's count, given back when the connection is dropped.
struct Slot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A connection that fails (`TimedOut`) once no byte has moved for its time limit: the header-read
/// timeout until its first byte, then the idle timeout.
pub struct Guarded<T> {
    io: T,
    deadline: Pin<Box<Sleep>>,
    idle: Duration,
    heard: bool,
    _slot: Slot,
}

impl<T> Guarded<T> {
    fn moved(&mut self) {
        self.heard = true;
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// Pending I/O: an error once the deadline has passed (and a wake-up set for when it does).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }

    fn timed_out(&self) -> io::Error {
        let what = if self.heard { "idle connection" } else { "nothing received" };
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(self.timed_out())),
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            // A client that reads no answer is as idle as one that sends nothing.
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(self.timed_out())),
            other => other,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(self.timed_out())),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Plain TCP connections, each admitted by the [`Guard`].
pub struct GuardedListener {
    listener: TcpListener,
    guard: Guard,
}

impl GuardedListener {
    pub fn new(listener: TcpListener, guard: Guard) -> Self {
        Self { listener, guard }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = Guarded<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((tcp, addr)) => {
                    if let Some(io) = self.guard.admit(tcp, addr) {
                        return (io, addr);
                    }
                }
                Err(error) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Serves `router` on the connections of `listener` until `shutdown`, then lets open connections finish
/// their requests in flight. Each request carries its client address (`ConnectInfo<SocketAddr>`).
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(());
    let (closed_tx, closed_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let service = router.clone().map_request(move |mut request: axum::extract::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(addr));
            request.map(axum::body::Body::new)
        });
        let service = TowerToHyperService::new(service);
        let (mut stop, closed) = (stop_rx.clone(), closed_rx.clone());
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            // CONNECT is how WebSockets travel over HTTP/2.
            builder.http2().timer(TokioTimer::new()).enable_connect_protocol();
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            let mut connection = std::pin::pin!(connection);
            let mut stopping = false;
            loop {
                tokio::select! {
                    ended = connection.as_mut() => {
                        if let Err(error) = ended {
                            tracing::debug!(%addr, %error, "connection ended");
                        }
                        break;
                    }
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(closed);
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(());
    drop(closed_rx);
    closed_tx.closed().await;
    Ok(())
}
