//! Small re-implementations of the Go standard library behaviours the gateway
//! relies on: MD5, `encoding/json` output, `textproto` header key
//! canonicalisation, `net/url` query parsing and encoding, `time.Time.String()`.

use std::collections::BTreeMap;

/// Lowercase hex MD5 of `data` (RFC 1321).
pub fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut state: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks_exact(64) {
        let m: Vec<u32> = chunk
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        state[0] = state[0].wrapping_add(a);
        state[1] = state[1].wrapping_add(b);
        state[2] = state[2].wrapping_add(c);
        state[3] = state[3].wrapping_add(d);
    }
    state
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `value` as Go's `encoding/json` writes it after decoding into
/// `interface{}`: compact, object keys sorted, numbers as `float64`, `<`, `>`,
/// `&`, U+2028 and U+2029 escaped.
pub fn go_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_go_json(value, &mut out);
    out
}

fn write_go_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => go_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_string(k, out);
                out.push(':');
                write_go_json(v, out);
            }
            out.push('}');
        }
    }
}

/// A `float64` as Go's `encoding/json` formats it.
fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".into();
    }
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        let s = format!("{f}");
        return if s == "-0" { "-0".into() } else { s };
    }
    // Exponent form: Go writes `1e+21`, `1e-7`.
    let s = format!("{f:e}");
    match s.split_once('e') {
        Some((mant, exp)) if !exp.starts_with('-') => format!("{mant}e+{exp}"),
        _ => s,
    }
}

fn go_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' => {
                let n = c as u32;
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((n >> shift) & 0xf) as usize] as char);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `template.JSEscapeString`, which the gateway applies to the message
/// of its JSON error template: `\\ ' "` are backslash-escaped (so an
/// apostrophe yields `\'`, not valid JSON), `< > & =` and control characters
/// become `\uXXXX`.
pub fn js_escape_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            // Go keeps printable non-ASCII as is and writes others as \uXXXX.
            c if !c.is_ascii() && (c.is_control() || is_format_or_unassigned(c)) => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Rough stand-in for "not `unicode.IsPrint`" beyond control characters:
/// separators other than the ASCII space and format characters.
fn is_format_or_unassigned(c: char) -> bool {
    matches!(c, '\u{00a0}' | '\u{00ad}' | '\u{2028}' | '\u{2029}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `content-type` ⇒ `Content-Type`.
/// Keys with characters outside the HTTP token set are returned unchanged.
pub fn canonical_header_key(key: &str) -> String {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if key.is_empty() || !key.bytes().all(token) {
        return key.to_string();
    }
    let mut upper = true;
    key.bytes()
        .map(|b| {
            let c = if upper {
                b.to_ascii_uppercase()
            } else {
                b.to_ascii_lowercase()
            };
            upper = b == b'-';
            c as char
        })
        .collect()
}

/// Query values as Go's `url.Values`: key ⇒ all values in order.
pub type Values = BTreeMap<String, Vec<String>>;

/// Go's `url.ParseQuery` (pairs that fail to parse are skipped). Values are
/// decoded to bytes; invalid UTF-8 is kept lossily (the caller checks it with
/// [`query_is_utf8`]).
pub fn parse_query(raw: &str) -> Values {
    let mut values = Values::new();
    for pair in raw.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (query_unescape(k), query_unescape(v)) else {
            continue;
        };
        values
            .entry(String::from_utf8_lossy(&k).into_owned())
            .or_default()
            .push(String::from_utf8_lossy(&v).into_owned());
    }
    values
}

/// Whether every decodable pair of `raw` is valid UTF-8 (the gateway cannot
/// marshal a `params` map otherwise).
pub fn query_is_utf8(raw: &str) -> bool {
    raw.split('&').all(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        [k, v].iter().all(|s| {
            query_unescape(s)
                .map(|b| std::str::from_utf8(&b).is_ok())
                .unwrap_or(true)
        })
    })
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` must be well formed.
pub fn query_unescape(s: &str) -> Option<Vec<u8>> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = hex(*b.get(i + 1)?)?;
                let l = hex(*b.get(i + 2)?)?;
                out.push(h << 4 | l);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.Values.Encode()`: keys sorted, values in order.
pub fn encode_query(values: &Values) -> String {
    let mut parts = Vec::new();
    for (k, vs) in values {
        for v in vs {
            parts.push(format!("{}={}", query_escape(k), query_escape(v)));
        }
    }
    parts.join("&")
}

/// A request URL split the way Go's `url.ParseRequestURI` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    /// `scheme://host` prefix for absolute URLs (e.g. `tyk://api`), else `""`.
    pub origin: String,
    /// The escaped path.
    pub path: String,
    /// The raw query (without `?`), if a `?` was present.
    pub query: Option<String>,
}

impl ParsedUrl {
    /// Parses a request URI: an absolute path or an absolute URL. `None` for
    /// what Go rejects (empty, relative, control characters, bad escapes).
    pub fn parse(s: &str) -> Option<ParsedUrl> {
        if s.is_empty() || s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return None;
        }
        let s = s.split_once('#').map_or(s, |(before, _)| before);
        let (rest, query) = match s.split_once('?') {
            Some((r, q)) => (r, Some(q.to_string())),
            None => (s, None),
        };
        let (origin, path) = if rest.starts_with('/') {
            (String::new(), rest.to_string())
        } else {
            let (scheme, after) = rest.split_once("://")?;
            let valid_scheme = scheme
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
            if !valid_scheme {
                return None;
            }
            let (host, path) = match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            };
            if host.contains(' ') {
                return None;
            }
            (format!("{scheme}://{host}"), path.to_string())
        };
        query_unescape(&path.replace('+', ""))?;
        Some(ParsedUrl {
            origin,
            path,
            query,
        })
    }

    /// The URL back as a string.
    pub fn to_url_string(&self) -> String {
        let mut s = format!("{}{}", self.origin, self.path);
        if let Some(q) = &self.query {
            s.push('?');
            s.push_str(q);
        }
        s
    }

    /// The request-URI (path and query, `/` for an empty path).
    pub fn request_uri(&self) -> String {
        let mut s = if self.path.is_empty() {
            "/".to_string()
        } else {
            self.path.clone()
        };
        if let Some(q) = &self.query {
            s.push('?');
            s.push_str(q);
        }
        s
    }

    /// The decoded query values.
    pub fn values(&self) -> Values {
        parse_query(self.query.as_deref().unwrap_or(""))
    }

    /// The percent-decoded path.
    pub fn decoded_path(&self) -> String {
        let mut out = Vec::new();
        let b = self.path.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Go's `time.Time.String()` for a UTC instant: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn go_time_string(unix_secs: i64, nanos: u32) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_vectors() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            md5_hex(b"The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
        let long = vec![b'a'; 1000];
        assert_eq!(md5_hex(&long), "cabe45dcc9ae5b66ba86600cca6b8ba8");
    }

    #[test]
    fn go_json_matches_encoding_json() {
        let v =
            serde_json::json!({"z": 1, "a": "<b>&</b>", "m": [1.5, true, null, 1e21, 1e-7, 100]});
        assert_eq!(
            go_json(&v),
            r#"{"a":"\u003cb\u003e\u0026\u003c/b\u003e","m":[1.5,true,null,1e+21,1e-7,100],"z":1}"#
        );
        assert_eq!(
            go_json(&serde_json::json!("\u{1}\n\u{2028}")),
            r#""\u0001\n\u2028""#
        );
    }

    #[test]
    fn canonical_keys() {
        assert_eq!(canonical_header_key("content-type"), "Content-Type");
        assert_eq!(canonical_header_key("X-FOO-bar"), "X-Foo-Bar");
        assert_eq!(canonical_header_key("bad key"), "bad key");
    }

    #[test]
    fn query_round_trip() {
        let v = parse_query("b=2&a=1&a=x+y&bad=%zz&c=%C3%A9");
        assert_eq!(v["a"], vec!["1", "x y"]);
        assert!(!v.contains_key("bad"));
        assert_eq!(encode_query(&v), "a=1&a=x+y&b=2&c=%C3%A9");
        assert!(!query_is_utf8("a=%ff"));
        assert!(query_is_utf8("a=%C3%A9"));
    }

    #[test]
    fn url_parsing() {
        assert!(ParsedUrl::parse("").is_none());
        assert!(ParsedUrl::parse("relative").is_none());
        assert!(ParsedUrl::parse("/a%zz").is_none());
        let u = ParsedUrl::parse("tyk://api/new?x=1").unwrap();
        assert_eq!(u.origin, "tyk://api");
        assert_eq!(u.path, "/new");
        assert_eq!(u.request_uri(), "/new?x=1");
        assert_eq!(ParsedUrl::parse("/a%20b").unwrap().decoded_path(), "/a b");
    }

    #[test]
    fn go_time() {
        assert_eq!(go_time_string(0, 0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            go_time_string(1_787_326_787, 123_000_000),
            "2026-08-21 15:39:47.123 +0000 UTC"
        );
    }
}

#[cfg(test)]
mod js_escape_tests {
    use super::js_escape_string;

    #[test]
    fn escapes_like_go_template_js_escape_string() {
        assert_eq!(
            js_escape_string(r#"tenant "x" <a&b=c>"#),
            r#"tenant \"x\" \u003Ca\u0026b\u003Dc\u003E"#
        );
        assert_eq!(js_escape_string("it's\\\n"), "it\\'s\\\\\\u000A");
        assert_eq!(
            js_escape_string("caf\u{e9} \u{1f600}\u{2028}"),
            "caf\u{e9} \u{1f600}\\u2028"
        );
    }
}
