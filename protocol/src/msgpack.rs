//! The rules a msgpack body must follow, checked before it is decoded.
//!
//! A msgpack message must be exactly what a JSON object can say. rmp-serde, decoding
//! into `serde_json::Value`, would refuse most of the rest on its own, but with vague
//! type errors (an extension type reads as "newtype struct"), and it recurses once
//! per level of nesting: with its default limit of 1024 levels, a 3 KB message
//! overflows the stack of a debug build. [`check`] walks the body first, with an
//! explicit stack and no recursion, and refuses up front, with a clear reason:
//! binary, extension types, non-string map keys, NaN and infinities, strings that
//! are not UTF-8, nesting deeper than JSON's, and anything after the value. A body it
//! accepts decodes.

/// The deepest nesting of maps and arrays accepted, the message itself counting as
/// the first level: 127, serde_json's limit for JSON, so that both encodings accept
/// the same objects.
pub const MAX_DEPTH: usize = 127;

/// Why a msgpack body breaks the protocol's rules. Offsets count bytes from the start
/// of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    /// Binary data (`bin 8/16/32`).
    #[error("binary data (at byte {offset}) has no JSON form")]
    Binary {
        /// Where the value starts.
        offset: usize,
    },
    /// An extension type (`fixext`, `ext 8/16/32`), timestamps included.
    #[error("an extension type (at byte {offset}) has no JSON form")]
    Extension {
        /// Where the value starts.
        offset: usize,
    },
    /// A map key that is not a string.
    #[error("map keys must be strings (the key at byte {offset} is not)")]
    NonStringKey {
        /// Where the key starts.
        offset: usize,
    },
    /// A float that is NaN or infinite.
    #[error("NaN and infinities (at byte {offset}) have no JSON form")]
    NonFiniteFloat {
        /// Where the value starts.
        offset: usize,
    },
    /// A string that is not valid UTF-8.
    #[error("the string at byte {offset} is not UTF-8")]
    NotUtf8 {
        /// Where the value starts.
        offset: usize,
    },
    /// Maps and arrays nested deeper than [`MAX_DEPTH`].
    #[error("maps and arrays nest deeper than {MAX_DEPTH} levels (at byte {offset})")]
    TooDeep {
        /// Where the first container too deep starts.
        offset: usize,
    },
    /// `0xc1`, which msgpack never uses.
    #[error("0xc1 (at byte {offset}) is not a msgpack marker")]
    Reserved {
        /// Where the marker is.
        offset: usize,
    },
    /// The body ends inside a value.
    #[error("the body ends in the middle of a value")]
    Truncated,
    /// The body goes on after its value.
    #[error("{count} bytes follow the value")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

/// Checks that `body` is one msgpack value within the protocol's rules (see the
/// module's documentation). It need not be a map: that is for the decoder to say.
///
/// # Errors
/// The first rule broken, reading from the start.
pub(crate) fn check(body: &[u8]) -> Result<(), MsgpackError> {
    let mut reader = Reader { body, at: 0 };
    // The maps and arrays entered and not yet finished, innermost last.
    let mut open: Vec<Container> = Vec::new();
    loop {
        let offset = reader.at;
        let item = reader.item()?;
        if open.last().is_some_and(Container::wants_key) && item != Item::String {
            return Err(MsgpackError::NonStringKey { offset });
        }
        if let Item::Container(container) = item {
            if open.len() == MAX_DEPTH {
                return Err(MsgpackError::TooDeep { offset });
            }
            if container.left > 0 {
                open.push(container);
                continue;
            }
        }
        // One item is complete: count it off its container, and off the containers
        // that this completes in turn.
        loop {
            let Some(innermost) = open.last_mut() else {
                return match body.len() - reader.at {
                    0 => Ok(()),
                    count => Err(MsgpackError::TrailingBytes { count }),
                };
            };
            innermost.left -= 1;
            if innermost.left > 0 {
                break;
            }
            open.pop();
        }
    }
}

/// A map or array being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Container {
    /// Items still to read; a map's keys and values both count.
    left: u64,
    is_map: bool,
}

impl Container {
    /// Whether the next item is a map key (a map's items alternate key, value).
    fn wants_key(&self) -> bool {
        self.is_map && self.left.is_multiple_of(2)
    }
}

/// What one item of the body turned out to be, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// A UTF-8 string.
    String,
    /// nil, a boolean, an integer or a finite float.
    Scalar,
    /// The head of a map or an array; its items follow.
    Container(Container),
}

/// A cursor over the body.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Reads one item: a whole scalar or string, or the head of a container.
    fn item(&mut self) -> Result<Item, MsgpackError> {
        let offset = self.at;
        let marker = self.take(1)?[0];
        match marker {
            // positive fixint, nil, false, true, negative fixint
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => Ok(Item::Scalar),
            0x80..=0x8f => Ok(map(u64::from(marker & 0x0f))),
            0x90..=0x9f => Ok(array(u64::from(marker & 0x0f))),
            0xa0..=0xbf => self.string(usize::from(marker & 0x1f), offset),
            0xc1 => Err(MsgpackError::Reserved { offset }),
            0xc4..=0xc6 => Err(MsgpackError::Binary { offset }),
            0xc7..=0xc9 | 0xd4..=0xd8 => Err(MsgpackError::Extension { offset }),
            0xca => finite(f32::from_be_bytes(self.bytes()?).is_finite(), offset),
            0xcb => finite(f64::from_be_bytes(self.bytes()?).is_finite(), offset),
            // uint 8/16/32/64, int 8/16/32/64
            0xcc..=0xd3 => self.take(1 << (marker & 0x03)).map(|_| Item::Scalar),
            0xd9 => {
                let len = self.length(1)?;
                self.string(len, offset)
            }
            0xda => {
                let len = self.length(2)?;
                self.string(len, offset)
            }
            0xdb => {
                let len = self.length(4)?;
                self.string(len, offset)
            }
            0xdc => Ok(array(self.uint(2)?)),
            0xdd => Ok(array(self.uint(4)?)),
            0xde => Ok(map(self.uint(2)?)),
            0xdf => Ok(map(self.uint(4)?)),
        }
    }

    /// Reads a string's `len` bytes, which must be UTF-8.
    fn string(&mut self, len: usize, offset: usize) -> Result<Item, MsgpackError> {
        match std::str::from_utf8(self.take(len)?) {
            Ok(_) => Ok(Item::String),
            Err(_) => Err(MsgpackError::NotUtf8 { offset }),
        }
    }

    /// Reads a big-endian unsigned integer of `size` bytes (at most 8).
    fn uint(&mut self, size: usize) -> Result<u64, MsgpackError> {
        Ok(self
            .take(size)?
            .iter()
            .fold(0, |value, &byte| (value << 8) | u64::from(byte)))
    }

    /// The next `N` bytes, which must all be there.
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], MsgpackError> {
        self.take(N)?.try_into().map_err(|_| MsgpackError::Truncated)
    }

    /// Reads a length of `size` bytes; one past the body's end is truncated anyway.
    fn length(&mut self, size: usize) -> Result<usize, MsgpackError> {
        usize::try_from(self.uint(size)?).map_err(|_| MsgpackError::Truncated)
    }

    /// The next `len` bytes, which must all be there.
    fn take(&mut self, len: usize) -> Result<&'a [u8], MsgpackError> {
        let body = self.body;
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= body.len())
            .ok_or(MsgpackError::Truncated)?;
        let bytes = &body[self.at..end];
        self.at = end;
        Ok(bytes)
    }
}

/// The head of a map of `pairs` entries.
fn map(pairs: u64) -> Item {
    Item::Container(Container {
        left: pairs * 2,
        is_map: true,
    })
}

/// The head of an array of `len` items.
fn array(len: u64) -> Item {
    Item::Container(Container {
        left: len,
        is_map: false,
    })
}

/// A float, refused unless it is finite.
fn finite(is_finite: bool, offset: usize) -> Result<Item, MsgpackError> {
    if is_finite {
        Ok(Item::Scalar)
    } else {
        Err(MsgpackError::NonFiniteFloat { offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"a": <value>}`
    fn in_a_map(value: &[u8]) -> Vec<u8> {
        [&[0x81, 0xa1, b'a'][..], value].concat()
    }

    #[test]
    fn accepts_what_json_can_say() {
        for body in [
            &[0x80][..],
            &[0x81, 0xa1, b'a', 0xc0],
            &[
                0x82, 0xa1, b'a', 0x92, 0xc3, 0xff, 0xa1, b'b', 0xcb, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            &[
                0xde, 0x00, 0x01, 0xd9, 0x01, b'k', 0xdc, 0x00, 0x01, 0xcf, 1, 2, 3, 4, 5, 6, 7, 8,
            ],
        ] {
            assert_eq!(check(body), Ok(()), "{body:x?}");
        }
    }

    #[test]
    fn refuses_values_with_no_json_form() {
        let cases = [
            (in_a_map(&[0xc4, 0x01, 0x00]), MsgpackError::Binary { offset: 3 }),
            (
                in_a_map(&[0xd4, 0x01, 0x00]),
                MsgpackError::Extension { offset: 3 },
            ),
            (
                in_a_map(&[0xc7, 0x00, 0x01]),
                MsgpackError::Extension { offset: 3 },
            ),
            (
                in_a_map(&[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]),
                MsgpackError::NonFiniteFloat { offset: 3 },
            ),
            (
                in_a_map(&[0xca, 0x7f, 0x80, 0, 0]),
                MsgpackError::NonFiniteFloat { offset: 3 },
            ),
            (in_a_map(&[0xa1, 0xff]), MsgpackError::NotUtf8 { offset: 3 }),
            (in_a_map(&[0xc1]), MsgpackError::Reserved { offset: 3 }),
            (vec![0x81, 0x01, 0xc0], MsgpackError::NonStringKey { offset: 1 }),
            (vec![0x81, 0xc0, 0xc0], MsgpackError::NonStringKey { offset: 1 }),
            (vec![0x81, 0x90, 0xc0], MsgpackError::NonStringKey { offset: 1 }),
            (vec![0x81, 0xc4, 0x00, 0xc0], MsgpackError::Binary { offset: 1 }),
        ];
        for (body, expected) in cases {
            assert_eq!(check(&body), Err(expected), "{body:x?}");
        }
    }

    #[test]
    fn refuses_short_and_long_bodies() {
        assert_eq!(check(&[]), Err(MsgpackError::Truncated));
        assert_eq!(check(&[0x81, 0xa1, b'a']), Err(MsgpackError::Truncated));
        assert_eq!(
            check(&[0xdf, 0xff, 0xff, 0xff, 0xff]),
            Err(MsgpackError::Truncated)
        );
        assert_eq!(
            check(&in_a_map(&[0xdb, 0xff, 0xff, 0xff, 0xff])),
            Err(MsgpackError::Truncated)
        );
        assert_eq!(
            check(&[0x80, 0xc0, 0xc0]),
            Err(MsgpackError::TrailingBytes { count: 2 })
        );
    }

    #[test]
    fn nesting_stops_at_the_json_limit() {
        // MAX_DEPTH levels: the map, then arrays, the innermost empty.
        let deepest = [&[0x81, 0xa1, b'a'][..], &[0x91; MAX_DEPTH - 2], &[0x90]].concat();
        assert_eq!(check(&deepest), Ok(()));
        let too_deep = [&[0x81, 0xa1, b'a'][..], &[0x91; MAX_DEPTH - 1], &[0x90]].concat();
        assert_eq!(
            check(&too_deep),
            Err(MsgpackError::TooDeep {
                offset: 3 + MAX_DEPTH - 1
            })
        );
    }
}
