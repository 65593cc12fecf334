//! The few administrative calls the tests need to turn authentication on:
//! users, roles, permissions. Not for stores' everyday use.

use super::client::{Client, Retry};
use super::proto::{self, path};
use crate::error::Result;

impl Client {
    /// Adds a user with a password.
    ///
    /// # Errors
    /// The connection errors; [`crate::Error::Remote`] if it exists.
    pub fn user_add(&self, name: &str, password: &str) -> Result<()> {
        let request = proto::AuthUserAddRequest {
            name: name.to_owned(),
            password: password.to_owned(),
        };
        let _: proto::HeaderOnly =
            self.call("add a user", path::USER_ADD, request, Retry::Write)?;
        Ok(())
    }

    /// Adds a role.
    ///
    /// # Errors
    /// The connection errors; [`crate::Error::Remote`] if it exists.
    pub fn role_add(&self, name: &str) -> Result<()> {
        let request = proto::AuthRoleAddRequest {
            name: name.to_owned(),
        };
        let _: proto::HeaderOnly =
            self.call("add a role", path::ROLE_ADD, request, Retry::Write)?;
        Ok(())
    }

    /// Lets `role` read and write `[key, range_end)`.
    ///
    /// # Errors
    /// The connection errors.
    pub fn role_grant_readwrite(&self, role: &str, key: &[u8], range_end: &[u8]) -> Result<()> {
        let request = proto::AuthRoleGrantPermissionRequest {
            name: role.to_owned(),
            perm: Some(proto::Permission {
                perm_type: proto::PermissionType::Readwrite as i32,
                key: key.to_vec(),
                range_end: range_end.to_vec(),
            }),
        };
        let _: proto::HeaderOnly = self.call(
            "grant a permission",
            path::ROLE_GRANT_PERMISSION,
            request,
            Retry::Write,
        )?;
        Ok(())
    }

    /// Gives `user` the role `role`.
    ///
    /// # Errors
    /// The connection errors.
    pub fn user_grant_role(&self, user: &str, role: &str) -> Result<()> {
        let request = proto::AuthUserGrantRoleRequest {
            user: user.to_owned(),
            role: role.to_owned(),
        };
        let _: proto::HeaderOnly =
            self.call("grant a role", path::USER_GRANT_ROLE, request, Retry::Write)?;
        Ok(())
    }

    /// Turns authentication on (needs a `root` user with the `root` role).
    ///
    /// # Errors
    /// The connection errors; [`crate::Error::Remote`] without a root user.
    pub fn auth_enable(&self) -> Result<()> {
        let _: proto::HeaderOnly = self.call(
            "enable authentication",
            path::AUTH_ENABLE,
            proto::AuthEnableRequest {},
            Retry::Write,
        )?;
        Ok(())
    }
}
