//! A single-flight TTL cache of one secret's parsed value.

use super::{extract, CacheSettings, ReadError, SecretError, SecretReader, SecretRef, SecretValue};
use crate::clock::Clock;
use crate::secret::SecretString;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

type Parse<T> = Box<dyn Fn(&SecretString) -> Result<T, String> + Send + Sync>;

/// One secret, read through a [`SecretReader`] and parsed into a `T` (an Ably key, an HS256
/// verification key), kept for [`CacheSettings::ttl`].
///
/// - A value younger than the TTL is answered from memory (a mutex-guarded clone of an `Arc`).
/// - Otherwise one caller reads while concurrent callers wait for its outcome (single flight:
///   one `GetSecretValue` however many requests arrive together).
/// - When the read fails because Secrets Manager is unreachable or throttling, the previous
///   value keeps being served up to [`CacheSettings::max_staleness`] (logged as a warning);
///   with nothing usable cached the answer is [`SecretError::Unavailable`].
/// - A missing, denied or unparseable secret is [`SecretError::Misconfigured`], even while a
///   previous value is cached: the store's answer is authoritative and not masked (fail closed).
/// - After a failed read, the same answer is given for [`CacheSettings::retry_after`] without
///   asking again.
///
/// Time comes from a [`Clock`] (wall time, which keeps counting while a Lambda container is
/// frozen between invocations); tests drive it by hand.
pub struct SecretCache<T> {
    secret: SecretRef,
    reader: Arc<dyn SecretReader>,
    parse: Parse<T>,
    settings: CacheSettings,
    clock: Arc<dyn Clock>,
    state: Mutex<State<T>>,
    /// Held by the one caller that is reading; the others wait on it, then find its outcome.
    flight: tokio::sync::Mutex<()>,
}

struct State<T> {
    current: Option<Current<T>>,
    failure: Option<Failure>,
}

struct Current<T> {
    value: Arc<T>,
    version: Option<String>,
    fetched_ms: u64,
}

struct Failure {
    at_ms: u64,
    error: SecretError,
}

fn age(now_ms: u64, then_ms: u64) -> Duration {
    Duration::from_millis(now_ms.saturating_sub(then_ms))
}

impl<T: Send + Sync + 'static> SecretCache<T> {
    pub(super) fn new(
        secret: SecretRef,
        reader: Arc<dyn SecretReader>,
        parse: Parse<T>,
        settings: CacheSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        SecretCache {
            secret,
            reader,
            parse,
            settings,
            clock,
            state: Mutex::new(State {
                current: None,
                failure: None,
            }),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    pub fn secret(&self) -> &SecretRef {
        &self.secret
    }

    /// The current value: cached when younger than the TTL, else read (once, for all
    /// concurrent callers).
    pub async fn get(&self) -> Result<Arc<T>, SecretError> {
        self.value_younger_than(self.settings.ttl).await
    }

    /// As [`Self::get`], but read again when the cached value is older than `min_age` (and
    /// than the TTL's shorter of the two): for a caller that has reason to think the secret
    /// just changed. Bounded like every read: single flight, and not within `retry_after`
    /// of a failed read.
    pub async fn refresh_if_older_than(&self, min_age: Duration) -> Result<Arc<T>, SecretError> {
        self.value_younger_than(min_age.min(self.settings.ttl)).await
    }

    async fn value_younger_than(&self, max_age: Duration) -> Result<Arc<T>, SecretError> {
        if let Some(answer) = self.settled(max_age) {
            return answer;
        }
        // Waiting for another request's read ends by this request's deadline too.
        let Some(_flight) = crate::deadline::cut_off(self.flight.lock()).await else {
            return self.cut_off();
        };
        // Whoever held the flight before us may have read (or failed) meanwhile.
        if let Some(answer) = self.settled(max_age) {
            return answer;
        }
        // A read ends by the request's deadline too, like any other dependency call. Cut off
        // there, it is this request's lack of time, not the store's failure: nothing is
        // recorded, and the next request reads again with its own time.
        match crate::deadline::cut_off(self.reader.read(&self.secret.id)).await {
            Some(read) => self.record(read),
            None => self.cut_off(),
        }
    }

    /// The answer to a request whose read was cut off at its deadline: the cached value while
    /// it is not too stale, else "unavailable" saying why.
    fn cut_off(&self) -> Result<Arc<T>, SecretError> {
        let error = SecretError::Unavailable(format!(
            "{}: no answer before the function timeout (the invocation's deadline)",
            self.secret.label()
        ));
        let state = self.state();
        let answer = self.fall_back(&state, &error, self.clock.now_ms());
        tracing::warn!(
            secret = %self.secret.label(),
            served_cached = answer.is_ok(),
            "AWS Secrets Manager read cut off at the request's deadline; the next request reads again"
        );
        answer
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer that needs no read, if there is one: a value younger than `max_age`, or
    /// the outcome of a failed read less than `retry_after` ago.
    fn settled(&self, max_age: Duration) -> Option<Result<Arc<T>, SecretError>> {
        let now = self.clock.now_ms();
        let state = self.state();
        if let Some(current) = &state.current {
            if age(now, current.fetched_ms) < max_age {
                return Some(Ok(current.value.clone()));
            }
        }
        let failure = state.failure.as_ref()?;
        (age(now, failure.at_ms) < self.settings.retry_after).then(|| self.fall_back(&state, &failure.error, now))
    }

    /// After a failed read: the cached value when the store is only unreachable and the
    /// value is not too stale; the error otherwise.
    fn fall_back(&self, state: &State<T>, error: &SecretError, now: u64) -> Result<Arc<T>, SecretError> {
        match (error, &state.current) {
            (SecretError::Unavailable(_), Some(current)) if age(now, current.fetched_ms) <= self.settings.max_staleness => {
                crate::metrics::secret_served_stale(self.secret.id_var);
                Ok(current.value.clone())
            }
            (SecretError::Unavailable(why), Some(current)) => Err(SecretError::Unavailable(format!(
                "{why}; the cached value is {} s old, beyond the maximum staleness of {} s (SECRET_MAX_STALENESS_SECONDS)",
                age(now, current.fetched_ms).as_secs(),
                self.settings.max_staleness.as_secs()
            ))),
            _ => Err(error.clone()),
        }
    }

    /// Store the outcome of a read and answer it.
    fn record(&self, read: Result<SecretValue, ReadError>) -> Result<Arc<T>, SecretError> {
        let now = self.clock.now_ms();
        let mut state = self.state();
        let parsed = read
            .map_err(|e| self.read_error(e))
            .and_then(|value| self.parse_value(&state, value));
        match parsed {
            Ok((value, version)) => {
                self.log_success(&state, version.as_deref());
                state.current = Some(Current {
                    value: value.clone(),
                    version,
                    fetched_ms: now,
                });
                state.failure = None;
                Ok(value)
            }
            Err(error) => {
                let answer = self.fall_back(&state, &error, now);
                self.log_failure(&state, &error, answer.is_ok(), now);
                state.failure = Some(Failure { at_ms: now, error });
                answer
            }
        }
    }

    fn read_error(&self, e: ReadError) -> SecretError {
        match e {
            ReadError::Unavailable(_) => SecretError::Unavailable(format!("{}: {e}", self.secret.label())),
            _ => SecretError::Misconfigured(format!("{}: {e}", self.secret.label())),
        }
    }

    /// The parsed value; the cached one again when the version did not change.
    fn parse_value(&self, state: &State<T>, read: SecretValue) -> Result<(Arc<T>, Option<String>), SecretError> {
        if let Some(current) = &state.current {
            if read.version.is_some() && current.version == read.version {
                return Ok((current.value.clone(), read.version));
            }
        }
        let misconfigured = |why: String| SecretError::Misconfigured(format!("{}: {why}", self.secret.label()));
        let inner = extract(&read.string, &self.secret).map_err(misconfigured)?;
        let value = (self.parse)(&inner).map_err(misconfigured)?;
        Ok((Arc::new(value), read.version))
    }

    fn log_success(&self, state: &State<T>, version: Option<&str>) {
        let previous = state.current.as_ref().and_then(|c| c.version.as_deref());
        match &state.current {
            None => tracing::info!(
                secret = %self.secret.label(),
                version,
                ttl_s = self.settings.ttl.as_secs(),
                "secret read from AWS Secrets Manager"
            ),
            Some(_) if previous != version => tracing::info!(
                secret = %self.secret.label(),
                previous_version = previous,
                version,
                "secret rotated: the new version is in use"
            ),
            Some(_) => {}
        }
        if state.failure.is_some() {
            tracing::info!(secret = %self.secret.label(), "AWS Secrets Manager answers again");
        }
    }

    fn log_failure(&self, state: &State<T>, error: &SecretError, served_cached: bool, now: u64) {
        match error {
            SecretError::Unavailable(why) if served_cached => tracing::warn!(
                secret = %self.secret.label(),
                error = %why,
                cached_age_s = state.current.as_ref().map(|c| age(now, c.fetched_ms).as_secs()),
                max_staleness_s = self.settings.max_staleness.as_secs(),
                retry_in_s = self.settings.retry_after.as_secs(),
                "cannot refresh the secret: serving the cached value"
            ),
            SecretError::Unavailable(why) => tracing::error!(
                secret = %self.secret.label(),
                error = %why,
                retry_in_s = self.settings.retry_after.as_secs(),
                "cannot read the secret and no usable value is cached: answering 503"
            ),
            SecretError::Misconfigured(why) => tracing::error!(
                secret = %self.secret.label(),
                error = %why,
                "the secret cannot be used: answering 500 until it is fixed"
            ),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{SecretStore, SecretValue};
    use super::*;
    use crate::future::BoxFuture;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// A clock the test moves by hand.
    #[derive(Default)]
    pub struct ManualClock(AtomicU64);

    impl ManualClock {
        pub fn advance(&self, d: Duration) {
            self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now_ms(&self) -> u64 {
            1_700_000_000_000 + self.0.load(Ordering::SeqCst)
        }
    }

    /// In-memory Secrets Manager: counts reads, serves the current value (or a queued
    /// failure), and yields a few times per read so that concurrent callers pile up.
    #[derive(Default)]
    pub struct FakeReader {
        pub calls: AtomicUsize,
        value: Mutex<Option<(String, u32)>>,
        fail: Mutex<Option<ReadError>>,
        delay: Mutex<Duration>,
    }

    impl FakeReader {
        pub fn with(value: &str) -> Arc<Self> {
            let r = Arc::new(FakeReader::default());
            r.put(value);
            r
        }

        /// PutSecretValue: a new AWSCURRENT version.
        pub fn put(&self, value: &str) {
            let mut v = self.value.lock().unwrap();
            let version = v.as_ref().map_or(1, |(_, n)| n + 1);
            *v = Some((value.to_owned(), version));
        }

        /// Make every read wait this long before answering.
        pub fn delay(&self, delay: Duration) {
            *self.delay.lock().unwrap() = delay;
        }

        /// Fail every read until [`Self::heal`].
        pub fn fail(&self, e: ReadError) {
            *self.fail.lock().unwrap() = Some(e);
        }

        pub fn heal(&self) {
            *self.fail.lock().unwrap() = None;
        }

        pub fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl SecretReader for FakeReader {
        fn read<'a>(&'a self, _secret_id: &'a str) -> BoxFuture<'a, Result<SecretValue, ReadError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                for _ in 0..5 {
                    tokio::task::yield_now().await;
                }
                let delay = *self.delay.lock().unwrap();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if let Some(e) = self.fail.lock().unwrap().clone() {
                    return Err(e);
                }
                match self.value.lock().unwrap().clone() {
                    Some((s, version)) => Ok(SecretValue {
                        string: SecretString::new(s),
                        version: Some(format!("v{version}")),
                    }),
                    None => Err(ReadError::NotFound),
                }
            })
        }
    }

    pub fn key_ref() -> SecretRef {
        SecretRef {
            id: "prod/ably".into(),
            field: "ABLY_API_KEY".into(),
            id_var: "ABLY_API_KEY_SECRET_ID",
            field_var: "ABLY_API_KEY_SECRET_FIELD",
        }
    }

    fn settings() -> CacheSettings {
        CacheSettings {
            ttl: Duration::from_secs(300),
            max_staleness: Duration::from_secs(3600),
            retry_after: Duration::from_secs(5),
        }
    }

    /// A cache of plain strings (refusing values that contain "bad").
    fn cache(reader: Arc<FakeReader>) -> (Arc<SecretCache<String>>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        let store = SecretStore::with_clock(reader, settings(), clock.clone());
        let cache = store.cache(key_ref(), |s: &SecretString| {
            if s.expose().contains("bad") {
                Err("the value is unusable".to_owned())
            } else {
                Ok(s.expose().to_owned())
            }
        });
        (cache, clock)
    }

    async fn get(cache: &SecretCache<String>) -> Result<String, SecretError> {
        cache.get().await.map(|v| (*v).clone())
    }

    #[tokio::test]
    async fn value_is_read_once_and_served_from_memory_until_the_ttl() {
        let reader = FakeReader::with("one");
        let (cache, clock) = cache(reader.clone());
        for _ in 0..100 {
            assert_eq!(get(&cache).await.unwrap(), "one");
        }
        assert_eq!(reader.calls(), 1);
        clock.advance(Duration::from_millis(299_999));
        assert_eq!(get(&cache).await.unwrap(), "one");
        assert_eq!(reader.calls(), 1);
        clock.advance(Duration::from_millis(1));
        assert_eq!(get(&cache).await.unwrap(), "one");
        assert_eq!(reader.calls(), 2, "one read per TTL");
        for _ in 0..100 {
            get(&cache).await.unwrap();
        }
        assert_eq!(reader.calls(), 2);
    }

    #[tokio::test]
    async fn concurrent_cold_requests_share_one_read() {
        let reader = FakeReader::with("one");
        let (cache, _clock) = cache(reader.clone());
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { get(&cache).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), "one");
        }
        assert_eq!(reader.calls(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_after_expiry_share_one_refresh_on_many_threads() {
        let reader = FakeReader::with("one");
        let (cache, clock) = cache(reader.clone());
        get(&cache).await.unwrap();
        reader.put("two");
        clock.advance(Duration::from_secs(301));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { get(&cache).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), "two");
        }
        assert_eq!(reader.calls(), 2);
    }

    #[tokio::test]
    async fn rotation_is_picked_up_at_the_first_request_after_the_ttl() {
        let reader = FakeReader::with("one");
        let (cache, clock) = cache(reader.clone());
        assert_eq!(get(&cache).await.unwrap(), "one");
        reader.put("two");
        clock.advance(Duration::from_secs(299));
        assert_eq!(
            get(&cache).await.unwrap(),
            "one",
            "within the TTL the cached value is served"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(get(&cache).await.unwrap(), "two");
    }

    #[tokio::test]
    async fn unchanged_version_keeps_the_same_parsed_value() {
        let reader = FakeReader::with("one");
        let (cache, clock) = cache(reader.clone());
        let first = cache.get().await.unwrap();
        clock.advance(Duration::from_secs(300));
        let second = cache.get().await.unwrap();
        assert_eq!(reader.calls(), 2);
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[tokio::test]
    async fn unreachable_store_serves_the_cached_value_up_to_the_maximum_staleness() {
        let reader = FakeReader::with("one");
        let (cache, clock) = cache(reader.clone());
        get(&cache).await.unwrap();
        reader.fail(ReadError::Unavailable("connection refused".into()));
        clock.advance(Duration::from_secs(300));
        assert_eq!(get(&cache).await.unwrap(), "one");
        assert_eq!(reader.calls(), 2);
        // Right up to the bound (retried every 5 s meanwhile)…
        clock.advance(Duration::from_secs(3300));
        assert_eq!(get(&cache).await.unwrap(), "one");
        assert_eq!(reader.calls(), 3);
        // …and not beyond it.
        clock.advance(Duration::from_secs(5));
        match get(&cache).await {
            Err(SecretError::Unavailable(why)) => {
                assert!(why.contains("maximum staleness") && why.contains("prod/ably"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_past_the_request_deadline_serves_the_cached_value() {
        let reader = FakeReader::with("one");
        let (warm, clock) = cache(reader.clone());
        get(&warm).await.unwrap();
        clock.advance(Duration::from_secs(300));
        reader.put("two");
        reader.delay(Duration::from_secs(60));
        let started = tokio::time::Instant::now();
        let within = |ms| crate::deadline::within(started + Duration::from_millis(ms), get(&warm));
        // The refresh hangs: cut off at the request's deadline, the cached value is served.
        assert_eq!(within(400).await.unwrap(), "one");
        assert_eq!(started.elapsed(), Duration::from_millis(400));
        assert_eq!(reader.calls(), 2);
        // With nothing cached, the same cut-off is the store being unavailable (a 503), saying why.
        let cold = FakeReader::with("one");
        cold.delay(Duration::from_secs(60));
        let (cold_cache, _) = cache(cold.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        match crate::deadline::within(deadline, get(&cold_cache)).await {
            Err(SecretError::Unavailable(why)) => assert!(why.contains("function timeout"), "{why}"),
            other => panic!("{other:?}"),
        }
        // The cut-off is not the store's failure: the next request, with time, reads again at once.
        cold.delay(Duration::ZERO);
        assert_eq!(get(&cold_cache).await.unwrap(), "one");
        assert_eq!(cold.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_another_requests_read_ends_by_this_requests_deadline() {
        // Concurrent mode: one request's slow read holds the single flight; another request,
        // with less time, stops waiting at its own deadline instead of at the read's end.
        let reader = FakeReader::with("one");
        reader.delay(Duration::from_secs(3));
        let (cold, _) = cache(reader.clone());
        let first = tokio::spawn({
            let cold = cold.clone();
            async move { get(&cold).await }
        });
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_millis(200);
        match crate::deadline::within(deadline, get(&cold)).await {
            Err(SecretError::Unavailable(why)) => assert!(why.contains("function timeout"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        // The first read was not disturbed, and it was the only one.
        assert_eq!(first.await.unwrap().unwrap(), "one");
        assert_eq!(reader.calls(), 1);
    }

    #[tokio::test]
    async fn throttling_is_treated_like_unreachable() {
        let reader = FakeReader::with("one");
        let (cache, clock) = cache(reader.clone());
        get(&cache).await.unwrap();
        reader.fail(ReadError::Unavailable("ThrottlingException: Rate exceeded".into()));
        clock.advance(Duration::from_secs(600));
        assert_eq!(get(&cache).await.unwrap(), "one");
    }

    #[tokio::test]
    async fn unreachable_store_with_nothing_cached_is_unavailable() {
        let reader = FakeReader::with("one");
        reader.fail(ReadError::Unavailable("connection refused".into()));
        let (cache, _clock) = cache(reader.clone());
        match get(&cache).await {
            Err(SecretError::Unavailable(why)) => {
                assert!(
                    why.contains(r#"ABLY_API_KEY_SECRET_ID="prod/ably""#) && why.contains("connection refused"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_failed_read_is_not_repeated_within_retry_after_then_recovers() {
        let reader = FakeReader::with("one");
        reader.fail(ReadError::Unavailable("timeout".into()));
        let (cache, clock) = cache(reader.clone());
        for _ in 0..50 {
            assert!(matches!(get(&cache).await, Err(SecretError::Unavailable(_))));
        }
        assert_eq!(reader.calls(), 1, "a failing store is asked once per retry_after");
        clock.advance(Duration::from_millis(4_999));
        assert!(get(&cache).await.is_err());
        assert_eq!(reader.calls(), 1);
        reader.heal();
        clock.advance(Duration::from_millis(1));
        assert_eq!(get(&cache).await.unwrap(), "one");
        assert_eq!(reader.calls(), 2);
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_failed_read() {
        let reader = FakeReader::with("one");
        reader.fail(ReadError::Unavailable("timeout".into()));
        let (cache, _clock) = cache(reader.clone());
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { get(&cache).await })
            })
            .collect();
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Err(SecretError::Unavailable(_))));
        }
        assert_eq!(reader.calls(), 1);
    }

    async fn misconfiguration(error: ReadError, value: &str) -> String {
        let reader = FakeReader::with(value);
        reader.fail(error);
        let (cache, _clock) = cache(reader);
        match get(&cache).await {
            Err(SecretError::Misconfigured(why)) => {
                assert!(
                    why.contains(r#"ABLY_API_KEY_SECRET_ID="prod/ably""#),
                    "names the secret: {why}"
                );
                assert!(!why.contains("MARKER"), "never the content: {why}");
                why
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_secret_is_misconfigured_naming_the_secret() {
        let why = misconfiguration(ReadError::NotFound, "MARKER").await;
        assert!(why.contains("does not exist"), "{why}");
    }

    #[tokio::test]
    async fn access_denied_is_misconfigured_naming_the_permission() {
        let why = misconfiguration(
            ReadError::AccessDenied("AccessDeniedException: not authorized".into()),
            "MARKER",
        )
        .await;
        assert!(why.contains("secretsmanager:GetSecretValue"), "{why}");
    }

    #[tokio::test]
    async fn binary_secret_and_other_refusals_are_misconfigured() {
        let why = misconfiguration(ReadError::NotText, "MARKER").await;
        assert!(why.contains("--secret-string"), "{why}");
        let why = misconfiguration(
            ReadError::Refused("InvalidRequestException: marked for deletion".into()),
            "MARKER",
        )
        .await;
        assert!(why.contains("marked for deletion"), "{why}");
    }

    #[tokio::test]
    async fn unparseable_values_are_misconfigured_without_their_content() {
        for value in [
            "bad MARKER",
            r#"{"ABLY_API_KEY": "bad MARKER"}"#,
            r#"{"other": "MARKER"}"#,
            r#"{"ABLY_API_KEY": MARKER"#,
        ] {
            let reader = FakeReader::with(value);
            let (cache, _clock) = cache(reader);
            match get(&cache).await {
                Err(SecretError::Misconfigured(why)) => {
                    assert!(why.starts_with(r#"ABLY_API_KEY_SECRET_ID="prod/ably": "#), "{why}");
                    assert!(!why.contains("MARKER"), "{why}");
                }
                other => panic!("{value}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_broken_rotation_is_not_masked_by_the_cached_value() {
        let reader = FakeReader::with("one");
        let (cache, clock) = cache(reader.clone());
        get(&cache).await.unwrap();
        reader.put("bad value");
        clock.advance(Duration::from_secs(300));
        assert!(matches!(get(&cache).await, Err(SecretError::Misconfigured(_))));
        // Fixed by the operator: picked up after retry_after.
        reader.put("three");
        clock.advance(Duration::from_secs(5));
        assert_eq!(get(&cache).await.unwrap(), "three");
    }

    #[tokio::test]
    async fn refresh_if_older_than_reads_again_but_at_most_once_per_min_age() {
        let reader = FakeReader::with("one");
        let (cache, clock) = cache(reader.clone());
        get(&cache).await.unwrap();
        reader.put("two");
        let min_age = Duration::from_secs(30);
        assert_eq!(*cache.refresh_if_older_than(min_age).await.unwrap(), "one");
        assert_eq!(reader.calls(), 1, "a value younger than min_age is not read again");
        clock.advance(Duration::from_secs(30));
        assert_eq!(*cache.refresh_if_older_than(min_age).await.unwrap(), "two");
        for _ in 0..10 {
            cache.refresh_if_older_than(min_age).await.unwrap();
        }
        assert_eq!(reader.calls(), 2);
        assert_eq!(get(&cache).await.unwrap(), "two");
    }

    #[tokio::test]
    async fn prefetch_reads_every_cache_once() {
        let reader = FakeReader::with("one");
        let clock = Arc::new(ManualClock::default());
        let store = SecretStore::with_clock(reader.clone(), settings(), clock);
        let a = store.cache(key_ref(), |s: &SecretString| Ok(s.expose().len()));
        let b = store.cache(key_ref(), |s: &SecretString| Ok(s.expose().to_owned()));
        store.prefetch().await;
        assert_eq!(reader.calls(), 2);
        assert_eq!(*a.get().await.unwrap(), 3);
        assert_eq!(*b.get().await.unwrap(), "one");
        assert_eq!(reader.calls(), 2);
    }

    #[tokio::test]
    async fn failed_prefetch_leaves_the_first_request_to_answer() {
        let reader = FakeReader::with("one");
        reader.fail(ReadError::Unavailable("connection refused".into()));
        let clock = Arc::new(ManualClock::default());
        let store = SecretStore::with_clock(reader.clone(), settings(), clock.clone());
        let cache = store.cache(key_ref(), |s: &SecretString| Ok(s.expose().to_owned()));
        store.prefetch().await;
        assert!(matches!(cache.get().await, Err(SecretError::Unavailable(_))));
        reader.heal();
        clock.advance(Duration::from_secs(5));
        assert_eq!(*cache.get().await.unwrap(), "one");
    }
}
