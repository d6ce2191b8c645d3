//! The baseline every bench binary measures in its own process, so that each figure can be
//! stated as a ratio to it (`make bench` prints that ratio next to the median): HMAC-SHA256
//! of 256 bytes with AWS-LC, the primitive under every token this project signs. It is native
//! code (SHA-NI where the CPU has it) whose speed no release-profile setting changes, so the
//! ratios compare our code across machines and across profiles.

use criterion::Criterion;
use std::hint::black_box;

pub fn baseline(c: &mut Criterion, binary: &str) {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"baseline-key-0123456789abcdef012");
    let message = [0x5a_u8; 256];
    c.bench_function(&format!("baseline/{binary}"), |b| {
        b.iter(|| aws_lc_rs::hmac::sign(&key, black_box(&message)))
    });
}
