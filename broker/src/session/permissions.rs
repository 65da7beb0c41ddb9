//! A session's side of permissions: denials told, counted and logged once, and the client
//! authenticated again when a reload replaces the credentials.

use std::sync::Arc;

use palio_protocol::ErrorCode;

use super::requests::Session;
use crate::auth::Auth;
use crate::groups::GroupCommand;
use crate::persist::PersistCommand;
use crate::router::{Command, Refusal};

impl Session<'_> {
    /// Counts `count` denials of `action`, logs the first of its kind on this connection, and
    /// returns the message for the client.
    pub(super) fn denied(&mut self, action: &'static str, count: u64, message: String) -> String {
        self.shared
            .metrics
            .permission_denied
            .with_label_values(&[action])
            .inc_by(count);
        if self.logged.insert(action) {
            tracing::info!(client = self.client, principal = %self.principal.name, action, %message, "permission denied (logged once per connection)");
        }
        message
    }

    /// The message for `count` publications outside the principal's publish permission
    /// (counted).
    pub(super) fn publish_denied(&mut self, count: u64) -> String {
        let source = self
            .principal
            .publish
            .as_ref()
            .map_or("TRUE", |f| f.source());
        let message = format!(
            "principal {:?} may publish only notifications matching `{source}`",
            self.principal.name
        );
        self.denied("publish", count, message)
    }

    /// Authenticates the client again under reloaded credentials. Closes the connection
    /// (`unauthenticated`) if its credential no longer holds or now names another principal;
    /// otherwise puts the new permissions in force: every subscription is narrowed again, and
    /// the persist and groups tasks get the new principal.
    pub(super) async fn reauthenticate(&mut self, auth: &Auth) -> Result<(), Refusal> {
        let principal = match auth.authenticate(&self.credential) {
            Ok(p) if p.name == self.principal.name => p,
            _ => {
                self.shared
                    .metrics
                    .auth_failures
                    .with_label_values(&["removed"])
                    .inc();
                tracing::info!(client = self.client, principal = %self.principal.name, "credentials withdrawn by a reload; disconnecting");
                return Err(self
                    .close_with(
                        ErrorCode::Unauthenticated,
                        "your credentials were withdrawn by a configuration reload".into(),
                    )
                    .await);
            }
        };
        if principal == self.principal {
            return Ok(());
        }
        self.principal = principal.clone();
        for (&subscription, source) in &self.subscriptions {
            // It compiled narrowed before; narrowed anew it fails only if the permission made
            // it too long or deep, and then nothing may slip through: the client is cut.
            let filter = match principal.narrow(source) {
                Ok(f) => f,
                Err((code, message)) => return Err(self.close_with(code, message).await),
            };
            self.shared
                .router
                .send(Command::Refilter {
                    client: self.client,
                    subscription,
                    filter,
                })
                .await?;
        }
        self.shared
            .persist
            .send(PersistCommand::Principal {
                client: self.client,
                principal: Arc::clone(&principal),
            })
            .await?;
        self.shared
            .groups
            .send(GroupCommand::Principal {
                client: self.client,
                principal,
            })
            .await?;
        Ok(())
    }
}
