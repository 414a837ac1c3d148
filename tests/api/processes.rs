//! Real processes and connections tests control: a private `redis-server`
//! (so server-wide statistics and `SCRIPT FLUSH` touch nobody else), a
//! private three-master Redis Cluster (whose masters a test may kill), a TCP
//! proxy that can cut a dependency off mid-test and bring it back, a proxy
//! that counts PostgreSQL round trips, a PgBouncer in transaction mode, a
//! `MONITOR` client that records every command clients send, and an SMTP
//! server (`tests/smtp_sink.py`, aiosmtpd) that keeps what it receives.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port whose cluster bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A Redis Cluster of the test's own: three masters on loopback, no
/// replicas, nothing kept on disk (a restarted node comes back empty, with
/// its slots). Killed on drop.
pub struct RedisCluster {
    dir: tempfile::TempDir,
    nodes: Vec<(u16, Option<Child>)>,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            let port = free_cluster_port();
            let child = cluster.spawn(port);
            cluster.nodes.push((port, Some(child)));
        }
        for (port, _) in &cluster.nodes {
            wait_until_answering(*port).await;
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed with redis-server");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_until_ok().await;
        cluster
    }

    fn spawn(&self, port: u16) -> Child {
        let dir = self.dir.path();
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .arg("--cluster-config-file")
            .arg(dir.join(format!("nodes-{port}.conf")))
            .arg("--dir")
            .arg(dir)
            .args(["--save", "", "--appendonly", "no"])
            // Answer for the slots that are up while a master is down.
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--cluster-node-timeout", "2000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)")
    }

    /// Every node sees every slot served.
    async fn wait_until_ok(&self) {
        for _ in 0..200 {
            let mut ok = true;
            for (port, _) in &self.nodes {
                let info = node_connection(*port).await.ok();
                let state = match info {
                    Some(mut conn) => redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async::<String>(&mut conn)
                        .await
                        .unwrap_or_default(),
                    None => String::new(),
                };
                ok &= state.contains("cluster_state:ok");
            }
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the Redis Cluster never reached cluster_state:ok");
    }

    /// The seed nodes, as `redis.cluster_nodes` takes them.
    pub fn nodes(&self) -> Vec<secrecy::SecretString> {
        self.nodes
            .iter()
            .map(|(port, _)| format!("redis://127.0.0.1:{port}").into())
            .collect()
    }

    /// The port of the master serving `key`.
    pub async fn master_of(&self, key: &str) -> u16 {
        let mut conn = node_connection(self.nodes[0].0).await.unwrap();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .unwrap();
        // Each range: start, end, then its master as [host, port, id, ...].
        let int = |value: &redis::Value| -> u16 {
            redis::FromRedisValue::from_redis_value_ref(value).unwrap()
        };
        ranges
            .iter()
            .find(|range| (int(&range[0])..=int(&range[1])).contains(&slot))
            .map(|range| match &range[2] {
                redis::Value::Array(master) => int(&master[1]),
                other => panic!("unexpected CLUSTER SLOTS entry {other:?}"),
            })
            .expect("every slot is served")
    }

    /// A connection to one node (not cluster-aware).
    pub async fn node(&self, port: u16) -> redis::aio::MultiplexedConnection {
        node_connection(port).await.unwrap()
    }

    /// Kills the master on `port`: its slots stop answering.
    pub fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|(p, _)| *p == port).unwrap();
        if let Some(mut child) = node.1.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node on `port` again: it rejoins with its slots, empty.
    pub async fn restart(&mut self, port: u16) {
        self.kill(port);
        let child = self.spawn(port);
        self.nodes.iter_mut().find(|(p, _)| *p == port).unwrap().1 = Some(child);
        wait_until_answering(port).await;
        self.wait_until_ok().await;
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(child) = child {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

async fn node_connection(port: u16) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))?
        .get_multiplexed_async_connection()
        .await
}

async fn wait_until_answering(port: u16) {
    for _ in 0..100 {
        if let Ok(mut conn) = node_connection(port).await
            && redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not start on port {port}");
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
        wait_until_answering(self.port).await;
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
/// [`TcpProxy::restore`]; [`TcpProxy::hold_replies`] lets requests through
/// but holds back what the target answers (a publish reaches the broker,
/// its confirm does not come back) until [`TcpProxy::release_replies`].
pub struct TcpProxy {
    pub port: u16,
    up: watch::Sender<bool>,
    replies: watch::Sender<bool>,
}

impl TcpProxy {
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = watch::channel(true);
        let (replies, _) = watch::channel(true);
        let state = up.clone();
        let flow = replies.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !*state.borrow() {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut down = state.subscribe();
                let mut flowing = flow.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = inbound.into_split();
                    let (mut server_read, mut server_write) = outbound.into_split();
                    let requests = tokio::io::copy(&mut client_read, &mut server_write);
                    let answers = async {
                        use tokio::io::AsyncReadExt;
                        let mut buffer = vec![0u8; 16 * 1024];
                        loop {
                            let read = server_read.read(&mut buffer).await?;
                            if read == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            // Held here while replies are held.
                            let _ = flowing.wait_for(|flowing| *flowing).await;
                            client_write.write_all(&buffer[..read]).await?;
                        }
                    };
                    tokio::select! {
                        _ = requests => {}
                        _ = answers => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up, replies }
    }

    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }

    pub fn hold_replies(&self) {
        self.replies.send_replace(false);
    }

    pub fn release_replies(&self) {
        self.replies.send_replace(true);
    }
}

/// A proxy in front of PostgreSQL that counts round trips: the client
/// messages a server answers with `ReadyForQuery` — a simple `Query` ('Q')
/// or the `Sync` ('S') that ends an extended-protocol batch. Messages sent
/// together before one of them (a pipeline) are one round trip.
pub struct PgRoundTrips {
    pub port: u16,
    count: Arc<std::sync::atomic::AtomicUsize>,
}

impl PgRoundTrips {
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let target = target.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (client_read, mut client_write) = inbound.into_split();
                    let (server_read, server_write) = outbound.into_split();
                    let mut server_read = server_read;
                    let to_client = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    });
                    let _ = count_client_messages(client_read, server_write, &counted).await;
                    to_client.abort();
                });
            }
        });
        Self { port, count }
    }

    /// Round trips since the last call.
    pub fn take(&self) -> usize {
        self.count.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

/// Forwards a client's messages, counting `Query` and `Sync`. The first
/// messages have no type byte: an optional `SSLRequest`, then the startup.
async fn count_client_messages(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counted: &std::sync::atomic::AtomicUsize,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    const SSL_REQUEST: u32 = 80_877_103;
    let mut started = false;
    loop {
        let mut message = Vec::new();
        let kind = if started {
            let kind = from.read_u8().await?;
            message.push(kind);
            Some(kind)
        } else {
            None
        };
        let len = from.read_u32().await?;
        message.extend_from_slice(&len.to_be_bytes());
        let mut body = vec![0; (len as usize).saturating_sub(4)];
        from.read_exact(&mut body).await?;
        match kind {
            None => started = body.get(..4) != Some(&SSL_REQUEST.to_be_bytes()[..]),
            Some(b'Q' | b'S') => {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Some(_) => {}
        }
        message.extend_from_slice(&body);
        to.write_all(&message).await?;
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
        command_names(&self.take_lines())
    }

    /// The command names sent since the last call, split: leases of the
    /// global rate-limit budgets (`{global}`, `{global_anonymous}`), and the
    /// rest (the tenant's active-minute note, sent once a minute, left out).
    pub fn take_split_at_global(&self) -> (Vec<String>, Vec<String>) {
        let lines: Vec<String> = self
            .take_lines()
            .into_iter()
            .filter(|line| !line.contains("active_tenants"))
            .collect();
        let (global, own): (Vec<String>, Vec<String>) =
            lines.into_iter().partition(|line| line.contains("{global"));
        (command_names(&global), command_names(&own))
    }

    /// The lines (command and arguments) sent by clients since the last call.
    pub fn take_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().drain(..).collect()
    }
}

/// The command name of each `MONITOR` line.
fn command_names(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| {
            let command = line.split("] ").nth(1)?.split(' ').next()?;
            Some(command.trim_matches('"').to_ascii_lowercase())
        })
        .collect()
}

/// A PgBouncer of the test's own (`scripts/pgbouncer.sh`), in transaction
/// mode, in front of the PostgreSQL of a URL: any database, `pool_size`
/// server connections per database and user. Stopped on drop.
pub struct PgBouncer {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PgBouncer {
    pub fn start(postgres_url: &str, pool_size: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("scripts/pgbouncer.sh")
            .arg("start")
            .arg(dir.path())
            .arg(pool_size.to_string())
            .arg(postgres_url)
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/pgbouncer.sh runs");
        assert!(out.status.success(), "pgbouncer did not start");
        let port = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        Self { dir, port }
    }

    /// What PgBouncer logged so far: connections opened and closed, and why.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// `postgres_url` with PgBouncer's address in place of PostgreSQL's.
    pub fn url(&self, postgres_url: &str) -> String {
        through_pgbouncer(postgres_url, self.port)
    }
}

/// `postgres_url` through the PgBouncer listening on `port`.
pub fn through_pgbouncer(postgres_url: &str, port: u16) -> String {
    let mut url = url::Url::parse(postgres_url).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(port)).unwrap();
    // PgBouncer speaks TLS only when configured to.
    url.query_pairs_mut().append_pair("sslmode", "disable");
    url.to_string()
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = Command::new("scripts/pgbouncer.sh")
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// The test virtualenv's Python (`make python-tools`: Celery, aiosmtpd).
pub fn venv_python() -> String {
    let venv = std::env::var("STOCK_TRACKER_VENV").unwrap_or_else(|_| {
        format!(
            "{}/.cache/stock-tracker/venv",
            std::env::var("HOME").unwrap()
        )
    });
    format!("{venv}/bin/python")
}

/// A real SMTP server on loopback (aiosmtpd): every message it accepts is
/// kept, parsed, for the test to read. Killed on drop.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    output: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    pub async fn start() -> Self {
        Self::rejecting_first(0).await
    }

    /// A server that answers the first `n` messages with a transient
    /// failure (451), as a busy or greylisting server does.
    pub async fn rejecting_first(n: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("messages.jsonl");
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_sink.py");
        let mut child = Command::new(venv_python())
            .args([script, &port.to_string(), output.to_str().unwrap()])
            .args(["--reject-first", &n.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the test venv's Python runs (make python-tools)");
        let stdout = child.stdout.take().unwrap();
        let ready = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
            line
        });
        let line = tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .expect("the SMTP sink starts")
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Self {
            child,
            port,
            output,
            _dir: dir,
        }
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.output)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Waits for a message to `to` whose subject contains `subject`.
    pub async fn wait_for(&self, to: &str, subject: &str, within: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let found = self.messages().into_iter().find(|m| {
                m["rcpt_tos"].as_array().unwrap().iter().any(|r| r == to)
                    && m["subject"].as_str().unwrap().contains(subject)
            });
            if let Some(message) = found {
                return message;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{subject}` email to {to}; received: {:?}",
                self.messages()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
