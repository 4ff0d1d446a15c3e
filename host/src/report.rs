//! Text for logs and error messages: client- and file-controlled text escaped, error
//! causes spelled out.

use std::fmt;
use std::path::Path;

/// Longest piece of client-controlled text a host-made message repeats.
pub const MAX_ECHO: usize = 64;

/// `path` for a log line or an error message, with control characters (a newline in
/// a file name, say) escaped so that it cannot forge log lines.
pub fn escaped_path(path: &Path) -> String {
    escaped(&path.display().to_string(), usize::MAX)
}

/// At most `max` characters of `text`, control characters escaped, `…` after a cut.
pub fn escaped(text: &str, max: usize) -> String {
    let mut shown: String = text
        .chars()
        .take(max)
        .flat_map(|c| {
            let escape = c.is_control().then(|| c.escape_debug().to_string());
            escape
                .unwrap_or_else(|| c.to_string())
                .chars()
                .collect::<Vec<_>>()
        })
        .collect();
    if text.chars().nth(max).is_some() {
        shown.push('…');
    }
    shown
}

/// An error and its causes, `outer: cause: root`, for one log field.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_text_cut() {
        assert_eq!(escaped("a\nb\u{1b}[31m", 100), "a\\nb\\u{1b}[31m");
        assert_eq!(escaped("abcdef", 3), "abc…");
        assert_eq!(escaped("abc", 3), "abc");
        assert_eq!(
            escaped_path(Path::new("dir/evil\nname.wasm")),
            "dir/evil\\nname.wasm"
        );
    }

    #[test]
    fn a_chain_names_every_cause() {
        let error = crate::files::ReadError::Io {
            path: "x".into(),
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(Chain(&error).to_string(), "cannot read `x`: disk on fire");
    }
}
