//! Arbitrary request bodies for the server's embedding routes (OpenAI's
//! and the native one): parsed and validated into texts, or a 4xx error
//! with a JSON body; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    membatch_server::fuzzing::requests(data, 384);
});
