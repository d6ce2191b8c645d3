//! `GET`/`POST /auth/token`: requests an Ably Token from Ably for the verified caller and answers its TokenDetails.
//! All logic lives in the `shared` crate (`shared::run`: logging, configuration, the event
//! boundary and the request path); this binary only names its route.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::run(shared::Route::AblyToken).await
}
