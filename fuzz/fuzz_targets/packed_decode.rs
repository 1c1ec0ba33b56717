//! Fuzzes the packed-batch reader: a packed body arrives from any client
//! that can send, so no input may make it panic or hand out a range
//! outside the body. The first byte picks the announced count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_common::packed;

fuzz_target!(|data: &[u8]| {
    let Some((&announced, body)) = data.split_first() else { return };
    let _ = packed::check(body, u32::from(announced));
    for entry in packed::entries(body).flatten() {
        assert!(entry.body.end <= body.len() && entry.body.start <= entry.body.end);
        let _ = entry.pairs().count();
    }
    let _ = packed::nth(body, usize::from(announced));
});
