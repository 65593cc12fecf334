//! Real etcd servers for the tests: one member or a three-member cluster on
//! free loopback ports, each with a fresh data directory; members can be
//! killed (SIGKILL) and restarted, and the leader found. Dropping a
//! [`Cluster`] kills every member and removes the directories, also when a
//! test panics. Everything waits at most [`START_TIMEOUT`].
//!
//! Needs `etcd` on PATH (Debian's etcd-server; `.ci/run` installs it): a
//! missing binary fails the test with a message saying so, never skips it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use statelog::testkit::etcd::{Client, ClientOptions, Credentials, Layout, TlsOptions};

pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A free port on 127.0.0.1 (free when asked; etcd binds it right after).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// Server-side TLS files, and a client identity the harness itself uses.
#[derive(Clone)]
pub struct ServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub struct Member {
    pub name: String,
    pub client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Extra server flags.
#[derive(Clone, Default)]
pub struct Settings {
    pub extra: Vec<String>,
    pub tls: Option<ServerTls>,
}

pub struct Cluster {
    pub members: Vec<Member>,
    settings: Settings,
    initial_cluster: String,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// One member.
    pub fn single() -> Cluster {
        Cluster::start(1, Settings::default())
    }

    /// `size` members with `settings`, all started and answering.
    pub fn start(size: usize, settings: Settings) -> Cluster {
        assert!(
            which_etcd().is_some(),
            "the etcd tests need an `etcd` binary on PATH (Debian: apt-get install etcd-server)"
        );
        let dir = tempfile::Builder::new()
            .prefix("statelog-etcd-")
            .tempdir()
            .expect("a temporary directory");
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            members,
            settings,
            initial_cluster,
            dir,
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_ready(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let scheme = if self.settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let member = &self.members[i];
        let client_url = format!("{scheme}://127.0.0.1:{}", member.client_port);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .expect("open the member's log");
        let mut command = Command::new("etcd");
        command
            .arg(format!("--name={}", member.name))
            .arg(format!("--data-dir={}", member.data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=statelog-test")
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .args(&self.settings.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        if let Some(tls) = &self.settings.tls {
            command
                .arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca.display()))
                .arg("--client-cert-auth=true");
        }
        let child = command.spawn().expect("start etcd");
        self.members[i].child = Some(child);
    }

    /// A client of member `i` alone (no failover), with these settings.
    pub fn member_client(
        &self,
        i: usize,
        credentials: Option<Credentials>,
        tls: Option<TlsOptions>,
    ) -> Client {
        Client::new(&ClientOptions {
            endpoints: vec![self.members[i].endpoint()],
            credentials,
            tls,
            connect_timeout: Some(Duration::from_millis(500)),
            request_timeout: Some(Duration::from_secs(5)),
            failover_timeout: Some(Duration::from_secs(1)),
        })
        .expect("a client")
    }

    /// Options reaching every member.
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            endpoints: self.endpoints(),
            connect_timeout: Some(Duration::from_millis(500)),
            request_timeout: Some(Duration::from_secs(5)),
            failover_timeout: Some(Duration::from_secs(20)),
            ..ClientOptions::default()
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// A client of the whole cluster.
    pub fn client(&self) -> Client {
        Client::new(&self.options()).expect("a client")
    }

    /// Waits until member `i` answers a status request and knows a leader.
    pub fn wait_ready(&mut self, i: usize) {
        self.wait_ready_with(i, None, None);
    }

    pub fn wait_ready_with(
        &mut self,
        i: usize,
        credentials: Option<Credentials>,
        tls: Option<TlsOptions>,
    ) {
        let tls = tls.or_else(|| self.settings.tls.as_ref().map(client_tls));
        let client = self.member_client(i, credentials, tls);
        let start = Instant::now();
        loop {
            if let Some(child) = self.members[i].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("etcd member {i} exited ({status}):\n{}", self.log_tail(i));
            }
            match client.status_of(0) {
                Ok(status) if status.leader != 0 => return,
                _ if start.elapsed() > START_TIMEOUT => {
                    panic!(
                        "etcd member {i} did not become ready in {START_TIMEOUT:?}:\n{}",
                        self.log_tail(i)
                    )
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Kills member `i` with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data directory and waits for it.
    pub fn restart(&mut self, i: usize) {
        assert!(!self.members[i].is_running(), "member {i} is running");
        self.spawn(i);
        self.wait_ready(i);
    }

    /// The index of the current leader, asking the running members.
    pub fn leader(&self) -> usize {
        let start = Instant::now();
        loop {
            for (i, member) in self.members.iter().enumerate() {
                if !member.is_running() {
                    continue;
                }
                let tls = self.settings.tls.as_ref().map(client_tls);
                if let Ok(status) = self.member_client(i, None, tls).status_of(0)
                    && let Some(header) = &status.header
                    && status.leader != 0
                    && status.leader == header.member_id
                {
                    return i;
                }
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "no leader within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Turns authentication on: a root user, and `user` with a role that may
    /// read and write only what `layout` owns.
    pub fn enable_auth(&self, layout: &Layout, user: &str, password: &str) {
        let admin = self.client();
        admin.user_add("root", "root-secret").expect("add root");
        admin.user_grant_role("root", "root").expect("grant root");
        admin.role_add("statelog").expect("add a role");
        let (start, end) = layout.everything();
        admin
            .role_grant_readwrite("statelog", &start, &end)
            .expect("grant the prefix");
        admin.user_add(user, password).expect("add the user");
        admin
            .user_grant_role(user, "statelog")
            .expect("grant the role");
        admin.auth_enable().expect("enable authentication");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

pub fn client_tls(tls: &ServerTls) -> TlsOptions {
    TlsOptions {
        ca_pem: std::fs::read(&tls.ca).expect("read the CA"),
        identity_pem: Some((
            std::fs::read(&tls.client_cert).expect("read the client certificate"),
            std::fs::read(&tls.client_key).expect("read the client key"),
        )),
        domain: None,
    }
}

fn which_etcd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}
