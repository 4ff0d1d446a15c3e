//! Who is on the other end of a connection, as far as the host knows.

use std::net::SocketAddr;

use crate::auth::Identity;

/// One connection's caller: where it connects from, and who it has shown it is.
#[derive(Debug, Clone)]
pub struct Session {
    peer: SocketAddr,
    identity: Option<Identity>,
    /// Whether it has sent a good token (when the host asks for tokens).
    authenticated: bool,
}

impl Session {
    /// A session from `peer`, known as `identity` if its client certificate names one.
    pub fn new(peer: SocketAddr, identity: Option<Identity>) -> Self {
        Self {
            peer,
            identity,
            authenticated: false,
        }
    }

    /// Where the client connects from.
    pub fn peer(&self) -> SocketAddr {
        self.peer
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
