//! `WWW-Authenticate` challenge parsing (RFC 7235 §4.1, RFC 6750 §3).
//!
//! A header may carry several challenges, each a scheme followed by either a
//! token68 or a comma-separated list of `name=value` parameters, where values
//! are tokens or quoted strings (with `\"` and `\\` escapes, and commas inside
//! the quotes):
//!
//! ```text
//! Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"
//! Basic realm="Registry", Bearer realm="https://auth.example/token"
//! ```

/// One challenge: the scheme (lowercased) and its parameters (names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) scheme: String,
    pub(crate) params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (case-insensitive), if present.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse every challenge in one header value. Fails on an unterminated quoted
/// string or a parameter without a name.
pub(crate) fn parse(header: &str) -> Result<Vec<Challenge>, String> {
    let mut p = Parser {
        s: header.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_list_separators();
        if p.at_end() {
            return Ok(out);
        }
        let scheme = p.token();
        if scheme.is_empty() {
            return Err(format!("expected an auth scheme at byte {}", p.pos));
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        p.skip_spaces();
        p.params(&mut challenge)?;
        out.push(challenge);
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    /// RFC 7230 `token`; `/` is accepted too so token68 values survive.
    fn token(&mut self) -> String {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b) {
                self.pos += 1;
            } else {
                break;
            }
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    /// An unquoted parameter value: lenient, anything up to `,` or whitespace
    /// (registries send `service=host:port` unquoted).
    fn bare_value(&mut self) -> String {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b == b',' || b == b' ' || b == b'\t' || b == b'"' {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    fn quoted(&mut self) -> Result<String, String> {
        let open = self.pos;
        self.pos += 1; // the opening quote
        let mut value = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => return Ok(String::from_utf8_lossy(&value).into_owned()),
                b'\\' => match self.peek() {
                    Some(escaped) => {
                        value.push(escaped);
                        self.pos += 1;
                    }
                    None => break,
                },
                _ => value.push(b),
            }
        }
        Err(format!("unterminated quoted string starting at byte {open}"))
    }

    /// Parameters (or a token68) of the current challenge. Stops before the
    /// next challenge's scheme, which is told apart from a parameter by the
    /// absence of `=` after its token.
    fn params(&mut self, challenge: &mut Challenge) -> Result<(), String> {
        let mut first = true;
        loop {
            self.skip_spaces();
            if self.at_end() {
                return Ok(());
            }
            let item_start = self.pos;
            let name = self.token();
            self.skip_spaces();
            if self.peek() != Some(b'=') {
                if first && !name.is_empty() && !matches!(self.peek(), Some(b',')) && self.at_end() {
                    // `Scheme token68` at the very end of the header.
                    challenge.params.push((String::new(), name));
                    return Ok(());
                }
                // Not a parameter: the start of the next challenge (or junk
                // the caller will report).
                self.pos = item_start;
                if name.is_empty() && !matches!(self.peek(), Some(b',')) {
                    return Err(format!("unexpected character at byte {}", self.pos));
                }
                return Ok(());
            }
            self.pos += 1; // '='
            if name.is_empty() {
                return Err(format!("parameter without a name at byte {item_start}"));
            }
            self.skip_spaces();
            let token68_padding = matches!(self.peek(), Some(b'=' | b',') | None);
            if first && token68_padding {
                // token68 ending in `=` padding, e.g. `Negotiate abc==`.
                let mut value = name;
                value.push('=');
                while self.peek() == Some(b'=') {
                    value.push('=');
                    self.pos += 1;
                }
                challenge.params.push((String::new(), value));
                return Ok(());
            }
            let value = if self.peek() == Some(b'"') {
                self.quoted()?
            } else {
                self.bare_value()
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
            first = false;
            self.skip_spaces();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_list_separators();
                }
                None => return Ok(()),
                Some(_) => return Err(format!("expected ',' after parameter at byte {}", self.pos)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(header: &str) -> Challenge {
        let mut all = parse(header).unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[test]
    fn docker_hub_bearer() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn commas_inside_quotes_and_escapes() {
        let c = one(r#"Bearer realm="https://a/token", scope="repository:x/y:pull,push", error="say \"hi\\\"""#);
        assert_eq!(c.param("scope"), Some("repository:x/y:pull,push"));
        assert_eq!(c.param("error"), Some(r#"say "hi\""#));
        assert_eq!(c.params.len(), 3);
    }

    #[test]
    fn several_challenges_in_one_header() {
        let all = parse(r#"Basic realm="Registry Realm", Bearer realm="https://t/x",service=reg"#).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].scheme, "basic");
        assert_eq!(all[0].param("realm"), Some("Registry Realm"));
        assert_eq!(all[1].scheme, "bearer");
        assert_eq!(all[1].param("service"), Some("reg"));
    }

    #[test]
    fn case_insensitive_names_and_bare_scheme() {
        let c = one(r#"BEARER Realm="r" , Service = "s""#);
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("REALM"), Some("r"));
        assert_eq!(c.param("service"), Some("s"));
        let bare = one("Basic");
        assert_eq!(bare.scheme, "basic");
        assert!(bare.params.is_empty());
    }

    #[test]
    fn token68() {
        assert_eq!(
            one("Negotiate abc==").params,
            vec![(String::new(), "abc==".to_string())]
        );
        assert_eq!(one("Negotiate abc").params, vec![(String::new(), "abc".to_string())]);
    }

    #[test]
    fn empty_and_unquoted_values() {
        let c = one(r#"Bearer realm="",service=registry.example:5000"#);
        assert_eq!(c.param("realm"), Some(""));
        assert_eq!(c.param("service"), Some("registry.example:5000"));
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert!(parse(r#"Bearer realm="https://unterminated"#).is_err());
        assert!(parse(r#"Bearer realm="x" junk"#).is_err());
        assert!(parse(r#"Bearer ="x""#).is_err());
        assert!(parse("").unwrap().is_empty());
    }
}
