//! The four routes, one function each. A leaf: every module that needs to know which
//! function it serves names this, not the service.

/// Which token a function answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/auth/jwt`: an Ably JWT (`application/jwt`).
    Jwt,
    /// `/auth/token-request`: a signed TokenRequest (`application/json`).
    TokenRequest,
    /// `/auth/token`: an Ably Token requested from Ably, as TokenDetails (`application/json`).
    AblyToken,
    /// `/auth/revoke`: revokes tokens at Ably for callers whose grant has `mayRevoke`.
    Revoke,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Jwt => "issue-jwt",
            Route::TokenRequest => "issue-token-request",
            Route::AblyToken => "issue-ably-token",
            Route::Revoke => "revoke-tokens",
        }
    }
}

/// The token an issuing route answers with (every route but `/auth/revoke`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Jwt,
    TokenRequest,
    AblyToken,
}

impl Route {
    /// The token this route issues; `None` for the revocation route.
    pub fn token(self) -> Option<TokenKind> {
        match self {
            Route::Jwt => Some(TokenKind::Jwt),
            Route::TokenRequest => Some(TokenKind::TokenRequest),
            Route::AblyToken => Some(TokenKind::AblyToken),
            Route::Revoke => None,
        }
    }
}

impl TokenKind {
    pub fn route(self) -> Route {
        match self {
            TokenKind::Jwt => Route::Jwt,
            TokenKind::TokenRequest => Route::TokenRequest,
            TokenKind::AblyToken => Route::AblyToken,
        }
    }
}
