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

impl ClientId {
    /// Validates a client id: 1–128 bytes, no control characters or whitespace.
    pub fn parse(field: &str, s: &str) -> Result<Self, CoreError> {
        Self::check(field, s)?;
        Ok(Self(Arc::from(s)))
    }

    /// [`parse`](Self::parse)'s checks, without building the id.
    pub fn check(field: &str, s: &str) -> Result<(), CoreError> {
        // Printable ASCII, the common case, needs no decoding of characters.
        if s.is_empty()
            || s.len() > MAX_ID_LEN
            || (!s.bytes().all(|b| b.is_ascii_graphic())
                && s.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err(CoreError::bad_request(format!(
                "Missing or invalid '{field}' field: expected 1 to {MAX_ID_LEN} bytes without spaces or control characters"
            )));
        }
        Ok(())
    }
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
}
