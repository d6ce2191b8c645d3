//! Ably's limits on tokens, and the bounds this service keeps inside them: shared by the
//! policy (what it may grant), the grant (how far a hint may narrow) and the parameters
//! (what a client may send).

/// Ably's maximum TTL for access tokens.
pub const MAX_TTL_SECONDS: u64 = 24 * 60 * 60;
/// Ably's maximum TTL for tokens of a key with revocable tokens.
pub const MAX_REVOCABLE_TTL_SECONDS: u64 = 60 * 60;
/// Ably asks clients to re-authenticate ~30 s before expiry: shorter tokens churn.
pub const MIN_TTL_SECONDS: u64 = 60;
pub const DEFAULT_TTL_SECONDS: u64 = 60 * 60;
/// The longest clientId issued or accepted as a hint, in UTF-8 bytes. Ably documents no
/// maximum; this bound matches the one on capability resource names
/// ([`crate::capability::MAX_RESOURCE_BYTES`]).
pub const MAX_CLIENT_ID_BYTES: usize = 2048;
