//! Helpers shared by the emulator test suites.
#![allow(dead_code)] // each suite uses a subset

use bytes::Bytes;
use tyk_plugin::testkit::{Gateway, TestResponse};

/// Sends `req` with `body` through the emulator.
pub async fn send(
    gw: &Gateway,
    req: http::request::Builder,
    body: impl Into<Bytes>,
) -> TestResponse {
    gw.send(req.body(body.into()).expect("valid test request"))
        .await
        .expect("the emulator handles the request")
}

/// A GET with headers.
pub async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> TestResponse {
    let mut req = http::Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(gw, req, Bytes::new()).await
}

/// The message of Tyk's JSON error template; fails the test otherwise.
pub fn error_message(res: &TestResponse) -> String {
    res.error_message()
        .unwrap_or_else(|| panic!("not Tyk's JSON error template: {:?}", res.body_str()))
}
