//! `GET`/`POST /auth/token`: requests an Ably Token from Ably for the verified caller and answers its TokenDetails.
//! All logic lives in the `shared` crate (`shared::main`: logging, the tokio runtime for the mode, configuration, the event
//! boundary and the request path); this binary only names its route.

fn main() -> Result<(), shared::runtime::Error> {
    shared::main(shared::Route::AblyToken)
}
