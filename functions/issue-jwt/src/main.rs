//! `GET`/`POST /auth/jwt`: answers an Ably JWT for the verified caller.
//! All logic lives in the `shared` crate (`shared::run`: logging, configuration, the event
//! boundary and the request path); this binary only names its route.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::run(shared::Route::Jwt).await
}
