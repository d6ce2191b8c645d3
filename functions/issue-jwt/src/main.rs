//! `GET`/`POST /auth/jwt`: answers an Ably JWT for the verified caller.
//! All logic lives in the `shared` crate; this binary only initialises and runs.

use lambda_http::{run, service_fn, Error, Request};
use shared::{Route, Service};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::log::init();
    let service = Service::from_env(Route::Jwt)
        .await
        .inspect_err(|e| shared::log::startup_error(e))?;
    let service = &service;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(service.handle(request).await)
    }))
    .await
}
