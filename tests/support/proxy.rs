//! A TCP proxy between one operator replica and the kube-apiserver (TLS passes through it
//! untouched), so a test can cut that replica's connections (its watches drop and reconnect) or
//! black-hole them (a partition: requests and renewals hang while the process keeps running).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    /// Bytes are dropped both ways (and new connections are held, never forwarded).
    black_hole: bool,
    /// Bumped to close every open connection.
    generation: u64,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    state: watch::Sender<State>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let (state, rx) = watch::channel(State {
            black_hole: false,
            generation: 0,
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(pipe(client, upstream, rx.clone()));
            }
        });
        Self { addr, state, task }
    }

    /// Closes every open connection: watches end, the next request opens a new one.
    pub fn cut(&self) {
        self.state.send_modify(|s| s.generation += 1);
    }

    /// From now on nothing passes and nothing is answered, in either direction.
    pub fn black_hole(&self) {
        self.state.send_modify(|s| s.black_hole = true);
    }

    /// Lets traffic through again; the connections that lost bytes are closed.
    pub fn heal(&self) {
        self.state.send_modify(|s| {
            s.black_hole = false;
            s.generation += 1;
        });
    }

    /// The URL of the API server through this proxy.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// Forwards one connection until either side closes or the generation changes.
async fn pipe(mut client: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<State>) {
    let born = state.borrow_and_update().generation;
    let ended = |s: &State| s.generation != born;
    let mut buf = vec![0u8; 16 * 1024];
    // A connection opened during a partition is held and never reaches the server.
    while state.borrow().black_hole {
        tokio::select! {
            read = client.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { return },
            changed = state.changed() => if changed.is_err() || ended(&state.borrow()) { return },
        }
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let mut back = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = cr.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if !state.borrow().black_hole && sw.write_all(&buf[..n]).await.is_err() { return },
            },
            read = sr.read(&mut back) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if !state.borrow().black_hole && cw.write_all(&back[..n]).await.is_err() { return },
            },
            changed = state.changed() => if changed.is_err() || ended(&state.borrow()) { return },
        }
    }
}
