//! `GET`/`POST /auth/jwt`: answers an Ably JWT for the verified caller.
//! All logic lives in the `shared` crate (`shared::main`: logging, the tokio runtime for the mode, configuration, the event
//! boundary and the request path); this binary only names its route.

fn main() -> Result<(), shared::runtime::Error> {
    shared::main(shared::Route::Jwt)
}
