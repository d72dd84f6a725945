//! The configuration loader on arbitrary text: never panics; an error names
//! the file, and every error but a TOML syntax error names the key at fault
//! (non-empty, and in the message). A configuration it accepts passed
//! validation: deriving the limits and timeouts from it does not panic, and
//! loading it again gives the same result.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use stoat::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.toml");
    match Config::from_toml_str(text, Some(file)) {
        Ok(config) => {
            config.validate().expect("an accepted config validates");
            let _ = config.limits();
            let http = &config.http;
            let _ = http.socket_addr();
            let _ = http.server_header();
            let _ = (
                http.keepalive_timeout(),
                http.request_timeout(),
                http.body_timeout(),
                http.write_timeout(),
                http.drain_timeout(),
                http.sse_heartbeat(),
            );
            let again = Config::from_toml_str(text, Some(file)).expect("same text, same verdict");
            assert_eq!(again, config);
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains("fuzz.toml"), "no file in {message:?}");
            assert_eq!(e.file(), Some(file));
            match &e {
                ConfigError::Syntax { .. } => assert!(e.key().is_none()),
                _ => {
                    let key = e.key().unwrap_or_else(|| panic!("no key in {message:?}"));
                    assert!(!key.is_empty(), "empty key in {message:?}");
                    assert!(message.contains(key), "key {key:?} not in {message:?}");
                }
            }
        }
    }
});
