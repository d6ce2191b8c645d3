//! `POST /auth/revoke`: revokes Ably tokens (by clientId, revocation key or channel) for callers whose grant has `mayRevoke`.
//! All logic lives in the `shared` crate (`shared::main`: logging, the tokio runtime for the mode, configuration, the event
//! boundary and the request path); this binary only names its route.

fn main() -> Result<(), shared::runtime::Error> {
    shared::main(shared::Route::Revoke)
}
