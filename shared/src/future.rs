//! The boxed future of the crate's narrow async traits (key source, secret reader, HTTP
//! fetcher, Ably client, caller verifiers): object-safe, `Send`, borrowing its receiver.

use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
