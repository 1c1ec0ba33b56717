//! Fuzzes the CommitLog record decoder, the parser that recovery runs over
//! torn or corrupted segment files: it must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_store::record::{self, Properties, Slot};

fuzz_target!(|data: &[u8]| {
    if let Ok(Slot::Record(view)) = record::decode(data) {
        let _ = view.verify();
        let _ = view.to_message(bytes::Bytes::copy_from_slice(view.body()));
    }
    let _ = Properties::decode(data);
});
