//! Feeds arbitrary bytes, in two reads split at an arbitrary point, to the
//! request decoder: it must never panic or hang, and every request it
//! returns must re-encode to bytes that decode to the same request.
#![no_main]

use bytes::{Bytes, BytesMut};
use delayd::protocol::{Decoder, Limits};
use libfuzzer_sys::fuzz_target;

/// Decodes everything complete in `buf`; false once an error was returned.
fn drain(d: &mut Decoder, buf: &mut BytesMut, limits: &Limits, out: &mut Vec<Vec<Bytes>>) -> bool {
    loop {
        match d.decode(buf, limits) {
            Ok(Some(r)) => out.push(r),
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let split = (split as usize).min(data.len());
    for authenticated in [true, false] {
        let limits = Limits {
            authenticated,
            max_bulk_len: 1 << 20,
            ..Limits::default()
        };
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&data[..split]);
        let mut got = Vec::new();
        if drain(&mut d, &mut buf, &limits, &mut got) {
            buf.extend_from_slice(&data[split..]);
            drain(&mut d, &mut buf, &limits, &mut got);
        }
        for args in got {
            let mut enc = BytesMut::new();
            enc.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in &args {
                enc.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                enc.extend_from_slice(a);
                enc.extend_from_slice(b"\r\n");
            }
            let again = Decoder::new()
                .decode(&mut enc, &Limits::default())
                .expect("a re-encoded request decodes");
            assert_eq!(again.as_ref(), Some(&args));
        }
    }
});
