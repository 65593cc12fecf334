//! [`EtcdOptions`]: how a store on etcd is reached (credentials, TLS,
//! timeouts, the cluster's limits), and the store's address
//! (`etcd://HOST:PORT[,HOST:PORT...]/PREFIX`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::client::{ClientOptions, Credentials, TlsOptions};
use super::keys::Layout;
use super::record::Limits;
use crate::error::{Error, Result, Shown};

/// The environment variables [`EtcdOptions::from_env`] reads.
pub const ENV_USER: &str = "STATELOG_ETCD_USER";
/// The password for [`ENV_USER`].
pub const ENV_PASSWORD: &str = "STATELOG_ETCD_PASSWORD";
/// A PEM file with the certificate authority that signed the members'
/// certificates: TLS is on when it is set.
pub const ENV_CA: &str = "STATELOG_ETCD_CA";
/// A PEM file with the client certificate (with [`ENV_KEY`]).
pub const ENV_CERT: &str = "STATELOG_ETCD_CERT";
/// A PEM file with the client certificate's private key.
pub const ENV_KEY: &str = "STATELOG_ETCD_KEY";
/// The cluster's `--max-txn-ops`, when it is not etcd's default (128).
pub const ENV_MAX_TXN_OPS: &str = "STATELOG_ETCD_MAX_TXN_OPS";
/// The cluster's `--max-request-bytes`, when it is not etcd's default (1.5 MiB).
pub const ENV_MAX_REQUEST_BYTES: &str = "STATELOG_ETCD_MAX_REQUEST_BYTES";

/// How to reach a store on an etcd v3 cluster (feature `etcd`): set with
/// [`Options::etcd`](crate::Options::etcd); the store itself is named by its
/// address, `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`, given to
/// [`Store::open`](crate::Store::open) as its path.
///
/// When [`Options`](crate::Options) carry none, `Store::open` of an `etcd://`
/// address uses [`EtcdOptions::from_env`], so that credentials can stay off
/// command lines.
///
/// ```
/// use std::time::Duration;
/// use statelog::{EtcdOptions, Options};
/// let options = Options::default().etcd(
///     EtcdOptions::new()
///         .user("runner", "secret")
///         .request_timeout(Duration::from_secs(5))
///         .max_txn_ops(1024),
/// );
/// # let _ = options;
/// ```
#[derive(Clone, Default)]
pub struct EtcdOptions {
    user: Option<(String, String)>,
    ca: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
    domain: Option<String>,
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    failover_timeout: Option<Duration>,
    limits: Limits,
}

impl std::fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("EtcdOptions")
            .field("user", &self.user.as_ref().map(|u| &u.0))
            .field("ca", &self.ca)
            .field("identity", &self.identity)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl EtcdOptions {
    /// No credentials, plain text, the default timeouts and etcd's default
    /// limits.
    pub fn new() -> EtcdOptions {
        EtcdOptions::default()
    }

    /// Options from the environment: `STATELOG_ETCD_USER` and
    /// `STATELOG_ETCD_PASSWORD` (authentication), `STATELOG_ETCD_CA` (TLS: the
    /// CA's PEM file), `STATELOG_ETCD_CERT` and `STATELOG_ETCD_KEY` (a client
    /// certificate), `STATELOG_ETCD_MAX_TXN_OPS` and
    /// `STATELOG_ETCD_MAX_REQUEST_BYTES` (the cluster's limits, when not
    /// etcd's defaults). Unset variables leave the defaults.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a password without a user (or the other
    /// way round), a certificate without its key, or a limit that is not a
    /// number.
    pub fn from_env() -> Result<EtcdOptions> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let text = |name: &'static str| -> Result<Option<String>> {
            var(name)
                .map(|v| {
                    v.into_string().map_err(|_| Error::InvalidOption {
                        name,
                        reason: "it is not valid UTF-8".into(),
                    })
                })
                .transpose()
        };
        let mut options = EtcdOptions::new();
        match (text(ENV_USER)?, text(ENV_PASSWORD)?) {
            (Some(user), Some(password)) => options = options.user(user, password),
            (None, None) => {}
            (Some(_), None) => {
                return Err(Error::InvalidOption {
                    name: ENV_PASSWORD,
                    reason: format!("{ENV_USER} is set but {ENV_PASSWORD} is not; set both"),
                });
            }
            (None, Some(_)) => {
                return Err(Error::InvalidOption {
                    name: ENV_USER,
                    reason: format!("{ENV_PASSWORD} is set but {ENV_USER} is not; set both"),
                });
            }
        }
        if let Some(ca) = var(ENV_CA) {
            options = options.ca_file(ca);
        }
        match (var(ENV_CERT), var(ENV_KEY)) {
            (Some(cert), Some(key)) => options = options.client_certificate(cert, key),
            (None, None) => {}
            _ => {
                return Err(Error::InvalidOption {
                    name: ENV_CERT,
                    reason: format!("set both {ENV_CERT} and {ENV_KEY}, or neither"),
                });
            }
        }
        let number = |name: &'static str| -> Result<Option<usize>> {
            text(name)?
                .map(|t| {
                    t.trim().parse::<usize>().map_err(|_| Error::InvalidOption {
                        name,
                        reason: format!("\"{}\" is not a whole number", Shown::new(&t)),
                    })
                })
                .transpose()
        };
        if let Some(n) = number(ENV_MAX_TXN_OPS)? {
            options = options.max_txn_ops(n);
        }
        if let Some(n) = number(ENV_MAX_REQUEST_BYTES)? {
            options = options.max_request_bytes(n);
        }
        Ok(options)
    }

    /// Authenticates as `user` with `password` (the cluster has
    /// authentication on; the user's role needs read and write permission on
    /// the store's prefix).
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// Connects with TLS, trusting the certificate authority in the PEM file
    /// `ca` (read when the store is opened).
    pub fn ca_file(mut self, ca: impl Into<PathBuf>) -> Self {
        self.ca = Some(ca.into());
        self
    }

    /// Presents the client certificate in the PEM file `cert`, with its
    /// private key in `key`, when the cluster asks for one
    /// (`--client-cert-auth`). Needs [`ca_file`](Self::ca_file).
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// The name to expect in the members' certificates (default: the host of
    /// each endpoint).
    pub fn tls_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// How long to wait for a connection to one member. Default: 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long one request to one member may take. Default: 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// How long a request may keep trying other members before it fails with
    /// [`Error::Unreachable`]. Default: 30 s.
    pub fn failover_timeout(mut self, timeout: Duration) -> Self {
        self.failover_timeout = Some(timeout);
        self
    }

    /// The cluster's `--max-txn-ops` (default 128): a commit needing more
    /// operations in one list of a transaction is refused with
    /// [`Error::LimitExceeded`] before anything is sent. etcd does not report
    /// its settings, so tell statelog when the cluster's differ.
    pub fn max_txn_ops(mut self, ops: usize) -> Self {
        self.limits.max_txn_ops = ops;
        self
    }

    /// The cluster's `--max-request-bytes` (default 1.5 MiB); see
    /// [`max_txn_ops`](Self::max_txn_ops).
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_request_bytes = bytes;
        self
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// The client's options for `endpoints`, with the TLS files read.
    pub(crate) fn client_options(&self, endpoints: Vec<String>) -> Result<ClientOptions> {
        let read = |name: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| Error::Io {
                op: name,
                path: path.to_owned(),
                source: e,
            })
        };
        let tls = match (&self.ca, &self.identity) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(Error::InvalidOption {
                    name: "etcd TLS",
                    reason: "a client certificate was given without the CA that signed the \
                             members' certificates; give the CA too"
                        .into(),
                });
            }
            (Some(ca), identity) => Some(TlsOptions {
                ca_pem: read("read the etcd CA certificate", ca)?,
                identity_pem: match identity {
                    Some((cert, key)) => Some((
                        read("read the etcd client certificate", cert)?,
                        read("read the etcd client key", key)?,
                    )),
                    None => None,
                },
                domain: self.domain.clone(),
            }),
        };
        Ok(ClientOptions {
            endpoints,
            credentials: self.user.as_ref().map(|(user, password)| Credentials {
                user: user.clone(),
                password: password.clone(),
            }),
            tls,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            failover_timeout: self.failover_timeout,
        })
    }
}

/// The parts of a store's address, `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    pub endpoints: Vec<String>,
    pub layout: Layout,
}

impl Address {
    /// Parses `text`, which starts with `etcd://`.
    pub(crate) fn parse(text: &str) -> Result<Address> {
        let refuse = |reason: String| Error::InvalidOption {
            name: "store address",
            reason: format!(
                "\"{}\" is not a store on etcd: {reason}; write \
                 etcd://HOST:PORT[,HOST:PORT...]/PREFIX",
                Shown::new(text)
            ),
        };
        let rest = text
            .strip_prefix(crate::access::ETCD_SCHEME)
            .ok_or_else(|| refuse("it does not start with etcd://".into()))?;
        let (hosts, prefix) = rest
            .split_once('/')
            .ok_or_else(|| refuse("it names no prefix".into()))?;
        let endpoints: Vec<String> = hosts.split(',').map(str::to_owned).collect();
        for endpoint in &endpoints {
            let ok = endpoint
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(refuse(format!(
                    "\"{}\" is not HOST:PORT",
                    Shown::new(endpoint)
                )));
            }
        }
        let layout = Layout::new(prefix)?;
        Ok(Address { endpoints, layout })
    }

    /// The address written out again (what the store's `path` is).
    pub(crate) fn to_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "{}{}/{}",
            crate::access::ETCD_SCHEME,
            self.endpoints.join(","),
            self.layout.prefix()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_name_endpoints_and_a_prefix() {
        let a = Address::parse("etcd://10.0.0.1:2379,[::1]:2380/ci/sync-state").unwrap();
        assert_eq!(a.endpoints, ["10.0.0.1:2379", "[::1]:2380"]);
        assert_eq!(a.layout.prefix(), "ci/sync-state");
        assert_eq!(
            a.to_path(),
            Path::new("etcd://10.0.0.1:2379,[::1]:2380/ci/sync-state")
        );
        for bad in [
            "etcd://h:2379",
            "etcd://h:2379/",
            "etcd://h/p",
            "etcd://:2379/p",
            "etcd://h:99999/p",
            "etcd://h:1,/p",
        ] {
            let e = Address::parse(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidOption { .. }), "{bad}: {e}");
        }
        let e = Address::parse("etcd://h:1/a\u{1b}b").unwrap_err();
        assert!(e.to_string().contains("control character"), "{e}");
    }

    #[test]
    fn the_password_is_never_shown() {
        let options = EtcdOptions::new().user("runner", "hunter2");
        let shown = format!("{options:?}");
        assert!(
            shown.contains("runner") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
