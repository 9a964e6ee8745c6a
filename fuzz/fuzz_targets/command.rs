//! Parses arbitrary argument vectors as commands: parsing must never panic,
//! and errors must be one-line replies.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Every command the table knows is hit often, so the fuzzer explores each
/// one's options (a new command joins with its table row).
fn name(which: u8) -> &'static str {
    let all = delayd::cmd::table::COMMANDS;
    all[(which as usize >> 1) % all.len()].name
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut args: Vec<Bytes> = rest.split(|&b| b == 0).map(Bytes::copy_from_slice).collect();
    if let Some(first) = args.first_mut() {
        if which & 1 == 0 {
            *first = Bytes::from_static(name(which).as_bytes());
        }
    }
    if let Err(e) = delayd::cmd::parse(args) {
        let text = e.reply_text();
        assert!(!text.is_empty());
    }
});
