//! Who a connection is: the identity its client certificate or its token gives it, and
//! the tokens file (`--auth-tokens`) that maps identities to tokens.
//!
//! ```toml
//! # tokens.toml: identity = "token"
//! billing = "3f9c…"
//! ops = "b71e…"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use subtle::ConstantTimeEq;

use crate::files;
use crate::report::escaped_path;

/// Largest tokens file read.
const MAX_TOKENS_FILE: usize = 1024 * 1024;
/// Shortest token accepted: anything shorter is guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// Who a connection authenticated as.
pub type Identity = Arc<str>;

/// Why a tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file cannot be read.
    #[error(transparent)]
    Read(#[from] files::ReadError),
    /// The file is not a TOML table of identity = "token" strings.
    #[error("invalid tokens file `{}`: {reason}", escaped_path(path))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The tokens a host accepts, and whose they are; reloadable.
pub struct Tokens {
    path: PathBuf,
    tokens: ArcSwap<Vec<(Identity, Vec<u8>)>>,
}

impl Tokens {
    /// Reads the tokens file at `path`.
    ///
    /// # Errors
    /// A [`TokensError`] naming the file and what is wrong with it.
    pub async fn load(path: &Path) -> Result<Self, TokensError> {
        let tokens = read(path).await?;
        Ok(Self {
            path: path.to_owned(),
            tokens: ArcSwap::from_pointee(tokens),
        })
    }

    /// The file it reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many identities have a token.
    pub fn len(&self) -> usize {
        self.tokens.load().len()
    }

    /// Whether no identity has a token (every `auth` then fails).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the file again; on failure the tokens read before stay.
    ///
    /// # Errors
    /// Why the new file cannot be used.
    pub async fn reload(&self) -> Result<(), TokensError> {
        self.tokens.store(Arc::new(read(&self.path).await?));
        Ok(())
    }

    /// The identity whose token `token` is. Every token is compared, each in constant
    /// time, so the time taken says nothing about which one (nearly) matched.
    pub fn identify(&self, token: &str) -> Option<Identity> {
        let mut found = None;
        for (identity, expected) in self.tokens.load().iter() {
            if bool::from(expected.as_slice().ct_eq(token.as_bytes())) {
                found = Some(Arc::clone(identity));
            }
        }
        found
    }
}

async fn read(path: &Path) -> Result<Vec<(Identity, Vec<u8>)>, TokensError> {
    let invalid = |reason: String| TokensError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let bytes = files::read_regular(path, MAX_TOKENS_FILE).await?;
    let text = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".to_owned()))?;
    let table: BTreeMap<String, String> =
        toml::from_str(&text).map_err(|error| invalid(error.message().to_owned()))?;
    let mut tokens = Vec::with_capacity(table.len());
    let mut seen = std::collections::HashSet::new();
    for (identity, token) in table {
        if identity.is_empty() || identity.contains(char::is_control) {
            return Err(invalid(format!(
                "identity {identity:?} is empty or has control characters"
            )));
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(invalid(format!(
                "the token of `{identity}` is shorter than {MIN_TOKEN_LEN} bytes"
            )));
        }
        if !seen.insert(token.clone()) {
            return Err(invalid(format!(
                "the token of `{identity}` is another identity's too"
            )));
        }
        tokens.push((Identity::from(identity), token.into_bytes()));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn tokens(text: &str) -> Result<Tokens, TokensError> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, text).expect("writes");
        Tokens::load(&path).await
    }

    #[tokio::test]
    async fn a_token_names_its_identity_and_nothing_else_does() {
        let tokens = tokens("billing = \"0123456789abcdef\"\nops = \"fedcba9876543210\"\n")
            .await
            .expect("valid");
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.identify("0123456789abcdef").as_deref(), Some("billing"));
        assert_eq!(tokens.identify("fedcba9876543210").as_deref(), Some("ops"));
        assert_eq!(tokens.identify("0123456789abcde"), None);
        assert_eq!(tokens.identify(""), None);
    }

    #[tokio::test]
    async fn short_shared_or_malformed_tokens_are_refused() {
        let short = tokens("billing = \"short\"\n").await.err().expect("refused");
        assert!(short.to_string().contains("shorter than 16"), "{short}");
        let shared = tokens("a = \"0123456789abcdef\"\nb = \"0123456789abcdef\"\n")
            .await
            .err()
            .expect("refused");
        assert!(shared.to_string().contains("another identity's"), "{shared}");
        let number = tokens("a = 1234567890123456\n").await.err().expect("refused");
        assert!(number.to_string().contains("invalid tokens file"), "{number}");
    }
}
