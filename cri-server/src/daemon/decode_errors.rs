//! A request whose protobuf does not decode (invalid UTF-8 in a string
//! field, a truncated message) is the caller's error: tonic answers it as
//! INTERNAL before any handler runs, so this layer turns exactly those
//! answers into INVALID_ARGUMENT. Their message already names the message
//! and field (`ContainerStatusRequest.container_id: invalid string
//! value: data is not UTF-8 encoded`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;

/// What tonic's decode failures start with.
const DECODE_FAILURE: &str = "failed to decode Protobuf message";

#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeErrorsLayer;

impl<S> tower::Layer<S> for DecodeErrorsLayer {
    type Service = DecodeErrors<S>;

    fn layer(&self, inner: S) -> DecodeErrors<S> {
        DecodeErrors { inner }
    }
}

#[derive(Debug, Clone)]
pub struct DecodeErrors<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for DecodeErrors<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            reclassify(response.headers_mut());
            Ok(response)
        })
    }
}

/// INTERNAL with a decode failure's message becomes INVALID_ARGUMENT.
fn reclassify(headers: &mut http::HeaderMap) {
    let internal = headers.get("grpc-status").is_some_and(|v| v == "13");
    if !internal {
        return;
    }
    let is_decode_failure = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| percent_decode(m).starts_with(DECODE_FAILURE));
    if is_decode_failure {
        headers.insert("grpc-status", HeaderValue::from_static("3"));
    }
}

/// gRPC's percent-encoding of `grpc-message`, undone.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: &str, message: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_str(status).unwrap());
        h.insert("grpc-message", HeaderValue::from_str(message).unwrap());
        h
    }

    #[test]
    fn decode_failures_become_invalid_argument() {
        let mut h = headers(
            "13",
            "failed%20to%20decode%20Protobuf%20message:%20ContainerStatusRequest.container_id:%20invalid%20string%20value",
        );
        reclassify(&mut h);
        assert_eq!(h["grpc-status"], "3");
    }

    #[test]
    fn other_internal_errors_stay() {
        let mut h = headers("13", "container%20c:%20cgroup:%20EBUSY");
        reclassify(&mut h);
        assert_eq!(h["grpc-status"], "13");
        let mut h = headers("5", "failed%20to%20decode%20Protobuf%20message");
        reclassify(&mut h);
        assert_eq!(h["grpc-status"], "5");
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
    }
}
