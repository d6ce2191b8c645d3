#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ably_auth_fuzz::event(data));
