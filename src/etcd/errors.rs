//! What an etcd failure means: whether the request can be sent again, and the
//! statelog error that says what happened.
//!
//! etcd reports its errors as gRPC statuses whose messages are stable strings
//! ("etcdserver: ..."). Transport failures come from tonic; a failure to
//! connect carries tonic's `ConnectError` in its source chain, which proves the
//! request was never sent.

use std::path::Path;

use crate::error::Error;

/// How a failed call may continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The request never reached a member, or was refused before it was
    /// proposed: any call may be sent again (to another member).
    NotSent,
    /// The member, the cluster or the connection failed while the request was
    /// in flight: a read may be sent again; a write's outcome is unknown.
    Transient,
    /// The token expired or the auth store changed: authenticate and resend
    /// (etcd refused the request before applying it).
    BadToken,
    /// An answer: sending again would get the same one.
    Final,
}

// etcd's messages (api/v3rpc/rpctypes/error.go).
pub(crate) const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
pub(crate) const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
pub(crate) const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";
pub(crate) const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
const INVALID_TOKEN: &str = "etcdserver: invalid auth token";
const OLD_AUTH_REVISION: &str = "etcdserver: revision of auth store is old";
const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";
const PROPOSAL_DROPPED: &str = "raft proposal dropped";
const AUTH_FAILED: &str = "etcdserver: authentication failed, invalid user ID or password";
const PERMISSION_DENIED: &str = "etcdserver: permission denied";
const USER_EMPTY: &str = "etcdserver: user name is empty";
const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";

pub(crate) fn classify(status: &tonic::Status) -> Class {
    let message = status.message();
    if is_connect_error(status) {
        return Class::NotSent;
    }
    if message == INVALID_TOKEN || message == OLD_AUTH_REVISION {
        return Class::BadToken;
    }
    // Refused before the proposal: nothing was applied.
    if message == TOO_MANY_REQUESTS || message.contains(PROPOSAL_DROPPED) {
        return Class::NotSent;
    }
    if message.starts_with("etcdserver:") || message.starts_with("grpc:") {
        return match status.code() {
            // No leader, leader changed, request timed out, server stopped,
            // unhealthy cluster: the member could not finish; another may.
            tonic::Code::Unavailable => Class::Transient,
            _ => Class::Final,
        };
    }
    match status.code() {
        // The connection broke, the stream was reset, or our own timer ran out.
        tonic::Code::Unavailable
        | tonic::Code::Unknown
        | tonic::Code::Cancelled
        | tonic::Code::DeadlineExceeded
        | tonic::Code::Internal
        | tonic::Code::Aborted => Class::Transient,
        _ => Class::Final,
    }
}

fn is_connect_error(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The status with its innermost cause (tonic's own message is often just
/// "transport error").
pub(crate) fn describe(status: &tonic::Status) -> String {
    let mut text = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_owned()
    };
    let mut source = std::error::Error::source(status);
    let mut innermost = None;
    while let Some(err) = source {
        innermost = Some(err.to_string());
        source = err.source();
    }
    if let Some(cause) = innermost
        && !text.contains(&cause)
    {
        text.push_str(": ");
        text.push_str(&cause);
    }
    text
}

/// The statelog error for an answer from `endpoint` to a client of the store
/// `store` (its `etcd://` address) authenticating as `user`.
pub(crate) fn to_error(
    status: tonic::Status,
    endpoint: &str,
    op: &'static str,
    store: &Path,
    user: Option<&str>,
) -> Error {
    let message = status.message();
    let endpoint = endpoint.to_owned();
    let denied = |what: &str, reason: &str| Error::Refused {
        path: store.to_owned(),
        pid: None,
        reason: format!("etcd member {endpoint} refused {what}: {reason}"),
    };
    let credentials = match user {
        Some(user) => format!("the credentials of user {}", crate::error::quote(user)),
        None => "the credentials".to_owned(),
    };
    match message {
        TOO_MANY_OPS => Error::LimitExceeded {
            limit: "--max-txn-ops",
            what: "the transaction's number of operations".into(),
            hint: "commit fewer records at once, or raise --max-txn-ops on every member".into(),
        },
        REQUEST_TOO_LARGE => Error::LimitExceeded {
            limit: "--max-request-bytes",
            what: "the request's size".into(),
            hint: "write smaller values or fewer at once, or raise --max-request-bytes on \
                   every member"
                .into(),
        },
        NO_SPACE => Error::LimitExceeded {
            limit: "--quota-backend-bytes",
            what: "the cluster's database size".into(),
            hint: "etcd raised its NOSPACE alarm and accepts no writes: compact its history, \
                   defragment every member and disarm the alarm (`etcdctl alarm disarm`), or \
                   raise --quota-backend-bytes"
                .into(),
        },
        COMPACTED => Error::Compacted {
            requested: 0,
            compacted: None,
        },
        AUTH_FAILED => denied(&credentials, "the user name or password is wrong"),
        USER_EMPTY => denied(
            "an anonymous request",
            "authentication is on for this cluster; give a user and password",
        ),
        AUTH_NOT_ENABLED => denied(
            &credentials,
            "authentication is not enabled on this cluster; connect without a user",
        ),
        PERMISSION_DENIED => denied(
            &format!("the request to {op}"),
            "the user has no permission on these keys; grant its role readwrite on the \
             store's prefix",
        ),
        _ if message.starts_with("grpc: received message larger than max") => {
            Error::LimitExceeded {
                limit: "--max-request-bytes",
                what: format!("the request's size ({message})"),
                hint: "write smaller values or fewer at once, or raise --max-request-bytes on \
                       every member"
                    .into(),
            }
        }
        _ => Error::Remote {
            endpoint,
            op,
            code: format!("{:?}", status.code()),
            message: describe(&status),
        },
    }
}

/// True for etcd's answer to a write attached to a lease that has ended
/// (expired or revoked since it was read).
pub(crate) fn is_lease_not_found(error: &Error) -> bool {
    matches!(error, Error::Remote { message, .. } if message.contains(LEASE_NOT_FOUND))
}

/// Fills in the revision a compacted read asked for.
pub(crate) fn with_requested_revision(error: Error, requested: i64) -> Error {
    match error {
        Error::Compacted { compacted, .. } => Error::Compacted {
            requested: u64::try_from(requested).unwrap_or(0),
            compacted,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_messages_are_classified() {
        let status = |code, message: &str| tonic::Status::new(code, message);
        use tonic::Code::*;
        assert_eq!(
            classify(&status(Unavailable, "etcdserver: leader changed")),
            Class::Transient
        );
        assert_eq!(
            classify(&status(Unavailable, "etcdserver: request timed out")),
            Class::Transient
        );
        assert_eq!(
            classify(&status(Unauthenticated, INVALID_TOKEN)),
            Class::BadToken
        );
        assert_eq!(
            classify(&status(InvalidArgument, OLD_AUTH_REVISION)),
            Class::BadToken
        );
        assert_eq!(
            classify(&status(ResourceExhausted, TOO_MANY_REQUESTS)),
            Class::NotSent
        );
        assert_eq!(
            classify(&status(InvalidArgument, TOO_MANY_OPS)),
            Class::Final
        );
        assert_eq!(classify(&status(ResourceExhausted, NO_SPACE)), Class::Final);
        assert_eq!(
            classify(&status(PermissionDenied, PERMISSION_DENIED)),
            Class::Final
        );
        assert_eq!(
            classify(&status(Unknown, "transport error")),
            Class::Transient
        );
        let connect =
            tonic::Status::from_error(Box::new(tonic::ConnectError("connection refused".into())));
        assert_eq!(classify(&connect), Class::NotSent);
        assert!(
            describe(&connect).contains("connection refused"),
            "{}",
            describe(&connect)
        );
    }

    #[test]
    fn limits_are_named_in_errors() {
        let store = Path::new("etcd://127.0.0.1:2379/ci");
        let e = to_error(
            tonic::Status::invalid_argument(TOO_MANY_OPS),
            "127.0.0.1:2379",
            "commit a transaction",
            store,
            None,
        );
        let text = e.to_string();
        assert!(text.contains("--max-txn-ops"), "{text}");
        assert!(text.contains("nothing was written"), "{text}");
        let e = to_error(
            tonic::Status::resource_exhausted(NO_SPACE),
            "h:1",
            "write",
            store,
            None,
        );
        assert!(e.to_string().contains("--quota-backend-bytes"), "{e}");
        assert!(e.to_string().contains("alarm disarm"), "{e}");
        let e = to_error(
            tonic::Status::permission_denied(PERMISSION_DENIED),
            "h:1",
            "write",
            store,
            Some("runner"),
        );
        assert!(matches!(e, Error::Refused { pid: None, .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("etcd://127.0.0.1:2379/ci refused"),
            "{e}"
        );
        let e = to_error(
            tonic::Status::invalid_argument(AUTH_FAILED),
            "h:1",
            "authenticate",
            store,
            Some("runner"),
        );
        assert!(e.to_string().contains("user \"runner\""), "{e}");
    }
}
