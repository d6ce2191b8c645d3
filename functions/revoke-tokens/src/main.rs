//! `POST /auth/revoke`: revokes Ably tokens (by clientId, revocation key or channel) for callers whose grant has `mayRevoke`.
//! All logic lives in the `shared` crate (`shared::run`: logging, configuration, the event
//! boundary and the request path); this binary only names its route.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::run(shared::Route::Revoke).await
}
