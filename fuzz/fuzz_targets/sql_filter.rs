//! Fuzzes the SQL92 filter parser and evaluator: consumers send filter
//! expressions over the network, so no input may make them panic or loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_filter::SqlFilter;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(f) = SqlFilter::new(text)
    {
        let _ = f.matches(|k| if k.len() % 2 == 0 { Some("42") } else { None });
    }
});
