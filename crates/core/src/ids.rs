//! Identifier newtypes. Cheap to clone (`Arc<str>`), validated at the edge.

use std::{borrow::Borrow, fmt, sync::Arc};

use crate::error::CoreError;

/// Longest accepted client or room id, in bytes.
pub const MAX_ID_LEN: usize = 128;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }
    };
}

id_type!(
    /// A peer's identity: the authenticated client id in every dialect.
    ClientId
);
id_type!(
    /// A room's name, the same string in every dialect.
    RoomId
);

// Ids cross processes (between nodes) as plain strings, validated again when read.
impl serde::Serialize for ClientId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ClientId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse("client_id", &s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl serde::Serialize for RoomId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RoomId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl ClientId {
    /// The media backend's id as a signal's sender ([`crate::media::SFU_PEER`]).
    pub fn sfu() -> Self {
        Self(Arc::from(crate::media::SFU_PEER))
    }

    /// Validates a client id: 1–128 bytes, no control, format or other invisible
    /// characters, no whitespace (so two ids that look the same are the same id).
    pub fn parse(field: &str, s: &str) -> Result<Self, CoreError> {
        Self::check(field, s)?;
        Ok(Self(Arc::from(s)))
    }

    /// [`parse`](Self::parse)'s checks, without building the id.
    pub fn check(field: &str, s: &str) -> Result<(), CoreError> {
        if s.is_empty() || s.len() > MAX_ID_LEN {
            return Err(CoreError::bad_request(format!(
                "Missing or invalid '{field}' field: expected 1 to {MAX_ID_LEN} bytes without spaces or control characters"
            )));
        }
        // Printable ASCII, the common case, needs no decoding of characters.
        if s.bytes().all(|b| b.is_ascii_graphic()) {
            return Ok(());
        }
        if let Some((at, c)) = s.char_indices().find(|&(_, c)| !id_char(c)) {
            let what = if c.is_control() {
                "a control character"
            } else if c.is_whitespace() {
                "whitespace"
            } else {
                "an invisible format character"
            };
            return Err(CoreError::bad_request(format!(
                "Invalid '{field}' field: U+{:04X} at byte {at} is {what}; ids may not contain spaces, control or format characters",
                u32::from(c)
            )));
        }
        Ok(())
    }
}

/// Whether `c` may appear in a client id: not a control character, not whitespace, not a
/// format character (Unicode category Cf: bidirectional overrides, zero-width spaces and
/// joiners, the byte order mark, tags) nor another default-ignorable code point (shown as
/// nothing: variation selectors, Hangul fillers, the combining grapheme joiner).
fn id_char(c: char) -> bool {
    const INVISIBLE: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x034F, 0x034F),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x115F, 0x1160),
        (0x17B4, 0x17B5),
        (0x180B, 0x180F),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x206F),
        (0x3164, 0x3164),
        (0xFE00, 0xFE0F),
        (0xFEFF, 0xFEFF),
        (0xFFA0, 0xFFA0),
        (0xFFF0, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0000, 0xE0FFF),
    ];
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = u32::from(c);
    !INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&u))
}

impl RoomId {
    /// Validates a room id: 1–128 characters of `A-Z a-z 0-9 - _ . :`.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        Self::check(s)?;
        Ok(Self(Arc::from(s)))
    }

    /// [`parse`](Self::parse)'s checks, without building the id.
    pub fn check(s: &str) -> Result<(), CoreError> {
        if s.is_empty()
            || s.len() > MAX_ID_LEN
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return Err(CoreError::bad_request(format!(
                "Missing or invalid 'room_id' field: expected 1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9, '-', '_', '.', ':'"
            )));
        }
        Ok(())
    }

    /// A fresh generated room id.
    pub fn generate() -> Self {
        Self(Arc::from(uuid::Uuid::new_v4().simple().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(ClientId::parse("client_id", "alice").is_ok());
        assert!(ClientId::parse("client_id", "").is_err());
        assert!(ClientId::parse("client_id", "a b").is_err());
        assert!(ClientId::parse("client_id", &"x".repeat(129)).is_err());
        assert!(RoomId::parse("meeting-room-123").is_ok());
        assert!(RoomId::parse("room/1").is_err());
        assert_eq!(RoomId::generate().as_str().len(), 32);
    }

    #[test]
    fn look_alike_ids_are_refused_by_name() {
        assert!(ClientId::parse("client_id", "zoë-😀-日本").is_ok());
        for (id, code, at) in [
            ("alice\u{202E}", "U+202E", 5),
            ("\u{200B}alice", "U+200B", 0),
            ("ali\u{FEFF}ce", "U+FEFF", 3),
            ("a\u{E0041}", "U+E0041", 1),
            ("a\u{3164}", "U+3164", 1),
        ] {
            let e = ClientId::parse("client_id", id).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::BadRequest);
            assert!(
                e.message
                    .contains(&format!("{code} at byte {at} is an invisible format")),
                "{id:?}: {}",
                e.message
            );
        }
        let e = ClientId::parse("client_id", "a\u{7}").unwrap_err();
        assert!(
            e.message
                .contains("U+0007 at byte 1 is a control character"),
            "{}",
            e.message
        );
        let e = ClientId::parse("client_id", "a\u{3000}b").unwrap_err();
        assert!(
            e.message.contains("U+3000 at byte 1 is whitespace"),
            "{}",
            e.message
        );
    }
}
