//! Parses arbitrary argument vectors as commands: parsing must never panic,
//! and errors must be one-line replies.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Command names worth hitting often, so the fuzzer explores their options.
const NAMES: &[&str] = &[
    "DELAYADD", "DELAYPOP", "BDELAYPOP", "DELAYACK", "DELAYREM", "DELAYSCORE", "DELAYCARD",
    "DELAYRANGE", "DELAYINFO", "HELLO", "AUTH", "CLIENT", "CONFIG", "COMMAND", "SCAN", "KEYS",
    "INFO", "SELECT", "PING", "SHUTDOWN", "FLUSHALL",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut args: Vec<Bytes> = rest.split(|&b| b == 0).map(Bytes::copy_from_slice).collect();
    if let Some(first) = args.first_mut() {
        if which & 1 == 0 {
            *first = Bytes::from_static(NAMES[(which as usize >> 1) % NAMES.len()].as_bytes());
        }
    }
    if let Err(e) = delayd::cmd::parse(args) {
        let text = e.reply_text();
        assert!(!text.is_empty());
    }
});
