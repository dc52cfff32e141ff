//! The opening handshake: is this an upgrade, which subprotocol, the 101.
//!
//! Protocol choice follows Kubernetes' `wsstream`: the first protocol in
//! the client's order that the endpoint supports wins; a client that
//! offers none gets the binary channel protocol (`channel.k8s.io`
//! semantics, or legacy port-forward); one that offers only unknown
//! protocols is refused with 403.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Empty;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::{Endpoint, WsError, WsProtocol, MAX_PORTS};
use crate::streaming::RemoteCommandProtocol as P;

/// The SPDY-over-WebSocket port-forward protocol of client-go's
/// tunneling dialer.
pub(super) const SPDY_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Exec/attach: what the kubelet's server (`channel.k8s.io`, `v4.*`,
/// base64 variants) and the apiserver (`v5.channel.k8s.io`) accept. No
/// Kubernetes WebSocket server speaks v2/v3 or a v5 base64 variant.
const REMOTE_COMMAND: &[(&str, WsProtocol)] = &[
    ("v5.channel.k8s.io", WsProtocol::Channel(P::V5)),
    ("v4.channel.k8s.io", WsProtocol::Channel(P::V4)),
    ("v4.base64.channel.k8s.io", WsProtocol::Base64(P::V4)),
    ("channel.k8s.io", WsProtocol::Channel(P::V1)),
    ("base64.channel.k8s.io", WsProtocol::Base64(P::V1)),
];

/// Port-forward: the SPDY tunnel, or the legacy channel protocol.
const PORT_FORWARD: &[(&str, WsProtocol)] = &[
    (SPDY_TUNNEL_PROTOCOL, WsProtocol::SpdyTunnel),
    ("v4.channel.k8s.io", WsProtocol::PortForwardChannels { base64: false }),
    (
        "v4.base64.channel.k8s.io",
        WsProtocol::PortForwardChannels { base64: true },
    ),
];

impl Endpoint {
    fn protocols(self) -> &'static [(&'static str, WsProtocol)] {
        match self {
            Self::RemoteCommand => REMOTE_COMMAND,
            Self::PortForward => PORT_FORWARD,
        }
    }

    /// What a client that names no protocol gets (Kubernetes maps `""`).
    fn unnamed(self) -> WsProtocol {
        match self {
            Self::RemoteCommand => WsProtocol::Channel(P::V1),
            Self::PortForward => WsProtocol::PortForwardChannels { base64: false },
        }
    }
}

/// `Connection: upgrade` and `Upgrade: websocket`, both matched as
/// case-insensitive tokens of comma lists (possibly several headers).
pub fn is_upgrade(req_headers: &HeaderMap) -> bool {
    has_token(req_headers, header::CONNECTION, "upgrade") && has_token(req_headers, header::UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The client's protocols in its order of preference (empty entries
/// skipped; bytes that are not UTF-8 become U+FFFD and match nothing).
fn offered(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|p| p.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// Picks the protocol for `endpoint` from the request's
/// `Sec-WebSocket-Protocol` headers, as Kubernetes servers do: the
/// client's first supported protocol; none offered → the unnamed binary
/// channel protocol; only unknown ones → [`WsError::UnsupportedProtocol`]
/// (answer 403).
pub fn negotiate(headers: &HeaderMap, endpoint: Endpoint) -> Result<WsProtocol, WsError> {
    let offered = offered(headers);
    if offered.is_empty() {
        return Ok(endpoint.unnamed());
    }
    let table = endpoint.protocols();
    offered
        .iter()
        .find_map(|o| table.iter().find(|(name, _)| name == o).map(|(_, p)| *p))
        .ok_or_else(|| WsError::UnsupportedProtocol {
            offered: offered.clone(),
            supported: table.iter().map(|(name, _)| *name).collect(),
        })
}

/// The `101 Switching Protocols` answer: `Sec-WebSocket-Accept` and, if
/// the client offered any, the chosen `Sec-WebSocket-Protocol`. Refuses a
/// request that is no upgrade, lacks `Sec-WebSocket-Key` or is not version
/// 13 (answer with [`WsError::response`]). The method (`GET`) is the
/// caller's to check.
pub fn accept_response(req_headers: &HeaderMap, protocol: &WsProtocol) -> Result<Response<Empty<Bytes>>, WsError> {
    if !is_upgrade(req_headers) {
        return Err(WsError::NotWebSocket);
    }
    let key = req_headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().trim_ascii())
        .filter(|k| !k.is_empty())
        .ok_or(WsError::MissingKey)?;
    check_version(req_headers)?;
    let mut builder = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, derive_accept_key(key));
    // Echo a protocol only to a client that asked for one: RFC 6455 4.1
    // clients (browsers, tungstenite) fail the connection otherwise.
    if !offered(req_headers).is_empty() {
        let name = HeaderValue::from_str(&protocol.name()).map_err(|e| WsError::Response(e.to_string()))?;
        builder = builder.header(header::SEC_WEBSOCKET_PROTOCOL, name);
    }
    builder.body(Empty::new()).map_err(|e| WsError::Response(e.to_string()))
}

fn check_version(headers: &HeaderMap) -> Result<(), WsError> {
    let version = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    match version {
        Some(v) if v.trim() == "13" => Ok(()),
        other => Err(WsError::UnsupportedVersion(other.unwrap_or_default().into_owned())),
    }
}

/// The ports of a legacy port-forward request: every `port` query
/// parameter, each a comma-separated list of ports 1..=65535 (as
/// Kubernetes' `NewV4Options`). `query` is the URI's query string.
pub fn parse_ports(query: Option<&str>) -> Result<Vec<u16>, WsError> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(key).as_deref() != Some("port") {
            continue;
        }
        let value = percent_decode(value).ok_or_else(|| WsError::BadPort(value.to_string()))?;
        if value.is_empty() {
            return Err(WsError::BadPort(value));
        }
        for port in value.split(',') {
            ports.push(parse_port(port)?);
        }
    }
    match ports.len() {
        0 => Err(WsError::NoPorts),
        n if n > MAX_PORTS => Err(WsError::TooManyPorts(n)),
        _ => Ok(ports),
    }
}

fn parse_port(text: &str) -> Result<u16, WsError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(WsError::BadPort(text.to_string())),
    }
}

/// `application/x-www-form-urlencoded` decoding of one key or value.
fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn offer(protocols: &'static str) -> HeaderMap {
        headers(&[("sec-websocket-protocol", protocols)])
    }

    fn upgrade_request(extra: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ]);
        for (name, value) in extra {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn remote_command_versions() {
        let rc = Endpoint::RemoteCommand;
        assert_eq!(
            negotiate(&offer("v5.channel.k8s.io"), rc),
            Ok(WsProtocol::Channel(P::V5))
        );
        assert_eq!(
            negotiate(&offer("v4.channel.k8s.io"), rc),
            Ok(WsProtocol::Channel(P::V4))
        );
        assert_eq!(
            negotiate(&offer("v4.base64.channel.k8s.io"), rc),
            Ok(WsProtocol::Base64(P::V4))
        );
        assert_eq!(negotiate(&offer("channel.k8s.io"), rc), Ok(WsProtocol::Channel(P::V1)));
        assert_eq!(
            negotiate(&offer("base64.channel.k8s.io"), rc),
            Ok(WsProtocol::Base64(P::V1))
        );
    }

    #[test]
    fn client_order_wins() {
        let rc = Endpoint::RemoteCommand;
        let v4_first = offer("v4.channel.k8s.io, v5.channel.k8s.io");
        assert_eq!(negotiate(&v4_first, rc), Ok(WsProtocol::Channel(P::V4)));
        let unknown_first = offer("v9.channel.k8s.io,  base64.channel.k8s.io ,v5.channel.k8s.io");
        assert_eq!(negotiate(&unknown_first, rc), Ok(WsProtocol::Base64(P::V1)));
        let split = headers(&[
            ("sec-websocket-protocol", "v3.channel.k8s.io"),
            ("sec-websocket-protocol", "v5.channel.k8s.io, v4.channel.k8s.io"),
        ]);
        assert_eq!(negotiate(&split, rc), Ok(WsProtocol::Channel(P::V5)));
    }

    #[test]
    fn no_protocol_is_the_binary_channel_protocol() {
        assert_eq!(
            negotiate(&HeaderMap::new(), Endpoint::RemoteCommand),
            Ok(WsProtocol::Channel(P::V1))
        );
        assert_eq!(
            negotiate(&offer(" , "), Endpoint::RemoteCommand),
            Ok(WsProtocol::Channel(P::V1))
        );
        assert_eq!(
            negotiate(&HeaderMap::new(), Endpoint::PortForward),
            Ok(WsProtocol::PortForwardChannels { base64: false })
        );
    }

    #[test]
    fn garbage_and_unsupported_versions_are_refused() {
        for garbage in [
            "v2.channel.k8s.io",
            "v3.channel.k8s.io",
            "V5.CHANNEL.K8S.IO",
            "chat",
            "v5.base64.channel.k8s.io",
        ] {
            let err = negotiate(&offer(garbage), Endpoint::RemoteCommand).unwrap_err();
            assert!(matches!(err, WsError::UnsupportedProtocol { .. }), "{garbage}: {err:?}");
            assert_eq!(err.status(), StatusCode::FORBIDDEN);
        }
        let mut binary = HeaderMap::new();
        binary.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_bytes(b"\xffv5").unwrap(),
        );
        assert!(negotiate(&binary, Endpoint::RemoteCommand).is_err());
    }

    #[test]
    fn port_forward_protocols() {
        let pf = Endpoint::PortForward;
        assert_eq!(
            negotiate(&offer("SPDY/3.1+portforward.k8s.io"), pf),
            Ok(WsProtocol::SpdyTunnel)
        );
        assert_eq!(
            negotiate(&offer("v4.channel.k8s.io"), pf),
            Ok(WsProtocol::PortForwardChannels { base64: false })
        );
        assert_eq!(
            negotiate(&offer("v4.base64.channel.k8s.io"), pf),
            Ok(WsProtocol::PortForwardChannels { base64: true })
        );
        assert!(negotiate(&offer("v5.channel.k8s.io"), pf).is_err());
        assert!(negotiate(&offer("channel.k8s.io"), pf).is_err());
        assert!(negotiate(&offer("SPDY/3.1+portforward.k8s.io"), Endpoint::RemoteCommand).is_err());
    }

    #[test]
    fn protocol_names_round_trip() {
        for (name, protocol) in REMOTE_COMMAND.iter().chain(PORT_FORWARD) {
            assert_eq!(protocol.name(), *name);
        }
    }

    #[test]
    fn upgrade_detection() {
        assert!(is_upgrade(&upgrade_request(&[])));
        assert!(is_upgrade(&headers(&[
            ("connection", "keep-alive, UPGRADE"),
            ("upgrade", "WebSocket")
        ])));
        assert!(is_upgrade(&headers(&[
            ("connection", "keep-alive"),
            ("connection", "upgrade"),
            ("upgrade", "h2c, websocket"),
        ])));
        assert!(!is_upgrade(&headers(&[
            ("connection", "upgrade"),
            ("upgrade", "SPDY/3.1")
        ])));
        assert!(!is_upgrade(&headers(&[
            ("connection", "keep-alive"),
            ("upgrade", "websocket")
        ])));
        assert!(!is_upgrade(&headers(&[
            ("connection", "upgraded"),
            ("upgrade", "websocket")
        ])));
    }

    #[test]
    fn accept_key_of_rfc6455() {
        let response = accept_response(&upgrade_request(&[]), &WsProtocol::Channel(P::V1)).unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let h = response.headers();
        // RFC 6455 section 1.3 (SHA-1 of key + GUID, base64).
        assert_eq!(h[header::SEC_WEBSOCKET_ACCEPT], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "Upgrade");
        assert!(
            h.get(header::SEC_WEBSOCKET_PROTOCOL).is_none(),
            "no protocol echoed when none offered"
        );
    }

    #[test]
    fn accept_echoes_the_chosen_protocol() {
        let request = upgrade_request(&[("sec-websocket-protocol", "v9.channel.k8s.io, v5.channel.k8s.io")]);
        let protocol = negotiate(&request, Endpoint::RemoteCommand).unwrap();
        let response = accept_response(&request, &protocol).unwrap();
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_PROTOCOL], "v5.channel.k8s.io");
    }

    #[test]
    fn bad_handshakes_are_400() {
        let p = WsProtocol::Channel(P::V5);
        let mut no_key = upgrade_request(&[]);
        no_key.remove(header::SEC_WEBSOCKET_KEY);
        assert_eq!(accept_response(&no_key, &p).unwrap_err(), WsError::MissingKey);

        let mut old = upgrade_request(&[]);
        old.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        let err = accept_response(&old, &p).unwrap_err();
        assert_eq!(err, WsError::UnsupportedVersion("8".into()));
        let refusal = err.response();
        assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
        assert_eq!(refusal.headers()[header::SEC_WEBSOCKET_VERSION], "13");

        let mut no_version = upgrade_request(&[]);
        no_version.remove(header::SEC_WEBSOCKET_VERSION);
        assert!(matches!(
            accept_response(&no_version, &p),
            Err(WsError::UnsupportedVersion(_))
        ));

        let plain = headers(&[("sec-websocket-key", "x"), ("sec-websocket-version", "13")]);
        assert_eq!(accept_response(&plain, &p).unwrap_err(), WsError::NotWebSocket);
    }

    #[test]
    fn port_query() {
        assert_eq!(parse_ports(Some("port=80")), Ok(vec![80]));
        assert_eq!(parse_ports(Some("a=b&port=80,443&port=8080")), Ok(vec![80, 443, 8080]));
        assert_eq!(parse_ports(Some("port=80%2C81")), Ok(vec![80, 81]));
        assert_eq!(parse_ports(None), Err(WsError::NoPorts));
        assert_eq!(parse_ports(Some("ports=80")), Err(WsError::NoPorts));
        assert!(matches!(parse_ports(Some("port=")), Err(WsError::BadPort(_))));
        assert!(matches!(parse_ports(Some("port=0")), Err(WsError::BadPort(_))));
        assert!(matches!(parse_ports(Some("port=65536")), Err(WsError::BadPort(_))));
        assert!(matches!(parse_ports(Some("port=80,,81")), Err(WsError::BadPort(_))));
        assert!(matches!(parse_ports(Some("port=%zz")), Err(WsError::BadPort(_))));
        let many = format!("port={}", vec!["1"; MAX_PORTS + 1].join(","));
        assert_eq!(parse_ports(Some(&many)), Err(WsError::TooManyPorts(MAX_PORTS + 1)));
    }
}
