//! What both backends agree on: counters as decimal text, and `list-keys` cursors.

use super::{Page, StoreError};

/// Most keys one `list-keys` page holds.
pub const MAX_PAGE: usize = 1000;

/// The counter `value` holds: decimal ASCII text of a 64-bit signed integer, written
/// as Rust and Redis write it (no sign on positives, no leading zeros, no spaces).
pub fn parse_counter(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let number: i64 = text.parse().ok()?;
    // NB: "+7", "007" and "-0" parse, but Redis's INCRBY refuses them: so do we.
    (number.to_string() == text).then_some(number)
}

/// The counter at `key` after adding `delta` to `current` (absent: 0).
pub(super) fn incremented(key: &str, current: Option<&[u8]>, delta: i64) -> Result<i64, StoreError> {
    let now = match current {
        None => 0,
        Some(value) => parse_counter(value).ok_or_else(|| StoreError::NotInteger { key: key.to_owned() })?,
    };
    now.checked_add(delta)
        .ok_or_else(|| StoreError::Overflow { key: key.to_owned() })
}

/// The page of `keys` a backend listed (at most [`MAX_PAGE`], in byte order): a full
/// page has a cursor after its last key.
pub(super) fn page(keys: Vec<String>) -> Page {
    let cursor = (keys.len() >= MAX_PAGE)
        .then(|| keys.last().map(|last| encode_cursor(last)))
        .flatten();
    Page { keys, cursor }
}

/// The cursor after `key`: opaque to handlers (hex of the key's bytes).
fn encode_cursor(key: &str) -> String {
    key.bytes().map(|byte| format!("{byte:02x}")).collect()
}

/// The key a cursor from [`encode_cursor`] starts after.
pub(super) fn decode_cursor(cursor: &str) -> Result<String, StoreError> {
    let bytes = cursor.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(2) {
        return Err(StoreError::BadCursor);
    }
    let key: Option<Vec<u8>> = bytes
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect();
    key.and_then(|key| String::from_utf8(key).ok())
        .ok_or(StoreError::BadCursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_canonical_decimal_text() {
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b"-7"), Some(-7));
        assert_eq!(parse_counter(b"0"), Some(0));
        assert_eq!(parse_counter(i64::MIN.to_string().as_bytes()), Some(i64::MIN));
        for bad in [
            &b"+7"[..],
            b"007",
            b"-0",
            b" 1",
            b"1 ",
            b"",
            b"1.0",
            b"abc",
            b"\xff",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_counter(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn increments_say_why_they_fail() {
        assert_eq!(incremented("k", None, 5), Ok(5));
        assert_eq!(incremented("k", Some(b"40"), 2), Ok(42));
        assert_eq!(
            incremented("k", Some(b"x"), 1),
            Err(StoreError::NotInteger { key: "k".into() })
        );
        assert_eq!(
            incremented("k", Some(i64::MAX.to_string().as_bytes()), 1),
            Err(StoreError::Overflow { key: "k".into() })
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_what_they_did_not_make() {
        for key in ["a", "ключ", "with space", "x:y"] {
            assert_eq!(decode_cursor(&encode_cursor(key)).as_deref(), Ok(key));
        }
        for bad in ["", "a", "zz", "ff", "6"] {
            assert_eq!(decode_cursor(bad), Err(StoreError::BadCursor), "{bad:?}");
        }
    }

    #[test]
    fn only_a_full_page_has_a_cursor() {
        assert_eq!(page(vec!["a".into()]).cursor, None);
        let full: Vec<String> = (0..MAX_PAGE).map(|n| format!("{n:04}")).collect();
        let cursor = page(full).cursor.expect("a full page has a cursor");
        assert_eq!(decode_cursor(&cursor).as_deref(), Ok("0999"));
    }
}
