#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| esalert::fuzzing::painless(data));
