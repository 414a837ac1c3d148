//! Real processes and connections tests control: a private `redis-server`
//! (so server-wide statistics and `SCRIPT FLUSH` touch nobody else), a TCP
//! proxy that can cut a dependency off mid-test and bring it back, and a
//! `MONITOR` client that records every command clients send.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of the test's own, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = free_port();
        let server = Self {
            child: Self::spawn(port),
            port,
        };
        server.wait_until_answering().await;
        server
    }

    fn spawn(port: u16) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            // `DEBUG SLEEP` stands in for a Redis that stops answering.
            .args(["--enable-debug-command", "yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)")
    }

    async fn wait_until_answering(&self) {
        for _ in 0..100 {
            if let Ok(mut conn) = self.connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills the server: its data is gone (it keeps nothing on disk).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, empty, as after a crash.
    pub async fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port);
        self.wait_until_answering().await;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards a local port to a target; [`TcpProxy::cut`] closes every
/// connection and refuses new ones (accepted, then closed at once) until
/// [`TcpProxy::restore`].
pub struct TcpProxy {
    pub port: u16,
    up: watch::Sender<bool>,
}

impl TcpProxy {
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = watch::channel(true);
        let state = up.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*state.borrow() {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut down = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up }
    }

    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// Records the commands clients send to a Redis server (`MONITOR`), leaving
/// out those scripts run inside Redis.
pub struct RedisMonitor {
    lines: Arc<Mutex<Vec<String>>>,
}

impl RedisMonitor {
    pub async fn start(port: u16) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(b"MONITOR\r\n").await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut ok = String::new();
        reader.read_line(&mut ok).await.unwrap();
        assert_eq!(ok.trim(), "+OK");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut line = String::new();
            while reader.read_line(&mut line).await.unwrap_or(0) > 0 {
                // `+1700000000.123456 [0 127.0.0.1:5555] "evalsha" ...`; from a script: `[0 lua]`.
                if !line.contains(" lua] ") {
                    sink.lock().unwrap().push(line.trim().to_owned());
                }
                line.clear();
            }
        });
        Self { lines }
    }

    /// The command names sent by clients since the last call.
    pub fn take_commands(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .drain(..)
            .filter_map(|line| {
                let command = line.split("] ").nth(1)?.split(' ').next()?;
                Some(command.trim_matches('"').to_ascii_lowercase())
            })
            .collect()
    }
}
