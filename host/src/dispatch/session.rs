//! Who is on the other end of a connection, as far as the host knows.

use crate::auth::Identity;

/// One connection's caller: who it has shown it is. (Where it connects from is in the
/// connection's log span.)
#[derive(Debug, Clone, Default)]
pub struct Session {
    identity: Option<Identity>,
    /// Whether it has sent a good token (when the host asks for tokens).
    authenticated: bool,
}

impl Session {
    /// A session known as `identity` if its client certificate names one.
    pub fn new(identity: Option<Identity>) -> Self {
        Self {
            identity,
            authenticated: false,
        }
    }

    /// Who the caller is, if the host knows.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// Whether it has authenticated with a token.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Records a good token: the caller is `identity` from now on.
    pub(super) fn authenticate(&mut self, identity: Identity) {
        self.identity = Some(identity);
        self.authenticated = true;
    }
}
