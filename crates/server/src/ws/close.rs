//! WebSocket close codes (RFC 6455 §7.4.1) the server sends, by name. Which code a cause
//! gets is decided where the cause is known: `conn::End` for the driver's own reasons,
//! each dialect's error table for refusals.

/// 1000: the purpose of the connection was fulfilled (the client closed, the room ended).
pub const NORMAL: u16 = 1000;
/// 1001: the server is going away (draining).
pub const GOING_AWAY: u16 = 1001;
/// 1006: no close frame (the socket failed); never sent, only reported.
pub const ABNORMAL: u16 = 1006;
/// 1008: a policy was violated (credentials, limits, timeouts, a replaced session).
pub const POLICY: u16 = 1008;
/// 1011: the server met a condition that kept it from serving the request.
pub const INTERNAL: u16 = 1011;
