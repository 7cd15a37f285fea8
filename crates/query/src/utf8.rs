//! String literals that are not valid UTF-8.
//!
//! PromQL strings follow Go's escaping, where `"\xc5"` is the single byte
//! 0xC5 and so may form invalid UTF-8. `promql-parser` has to produce a Rust
//! `String` and decodes such an escape to the character U+00C5 instead, so
//! the evaluator can no longer tell that Prometheus would reject the string
//! as a label name. This module rescans the query text for quoted literals
//! whose Go bytes are invalid UTF-8 and remembers them, keyed by the string
//! the parser made of them.

use std::collections::HashMap;

/// Maps the parser's decoding of each invalid literal to its Go-quoted
/// form (`"a\xc5z"`), as Prometheus prints it in errors.
pub(crate) fn invalid_literals(query: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = query.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '"' && c != '\'' {
            if c == '`' {
                // Raw strings have no escapes: skip to the closing quote.
                for (_, d) in chars.by_ref() {
                    if d == '`' {
                        break;
                    }
                }
            }
            continue;
        }
        let quote = c;
        let mut parsed = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut closed = false;
        while let Some((_, d)) = chars.next() {
            if d == quote {
                closed = true;
                break;
            }
            if d != '\\' {
                parsed.push(d);
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(d.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            let Some((_, e)) = chars.next() else { break };
            let (digits, radix) = match e {
                'x' => (2, 16),
                'u' => (4, 16),
                'U' => (8, 16),
                '0'..='7' => (2, 8),
                other => {
                    let ch = match other {
                        'a' => '\u{7}',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'v' => '\u{b}',
                        x => x,
                    };
                    parsed.push(ch);
                    bytes.push(ch as u8);
                    continue;
                }
            };
            let mut v: u32 = if radix == 8 {
                e.to_digit(8).unwrap_or(0)
            } else {
                0
            };
            for _ in 0..digits {
                let Some(&(_, h)) = chars.peek() else { break };
                let Some(x) = h.to_digit(radix) else { break };
                v = v.saturating_mul(radix).saturating_add(x);
                chars.next();
            }
            let ch = char::from_u32(v).unwrap_or('\u{fffd}');
            parsed.push(ch);
            if matches!(e, 'u' | 'U') {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            } else {
                // \x and octal escapes are single bytes in Go.
                bytes.push(u8::try_from(v).unwrap_or(0xff));
            }
        }
        if closed && std::str::from_utf8(&bytes).is_err() {
            out.insert(parsed, go_quote(&bytes));
        }
    }
    out
}

/// Go's `%q` of a byte string: invalid UTF-8 bytes as `\xNN`.
fn go_quote(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                push_escaped(&mut s, valid);
                break;
            }
            Err(e) => {
                let (valid, bad) = rest.split_at(e.valid_up_to());
                push_escaped(&mut s, std::str::from_utf8(valid).unwrap_or(""));
                let n = e.error_len().unwrap_or(bad.len()).max(1);
                for b in bad.iter().take(n) {
                    s.push_str(&format!("\\x{b:02x}"));
                }
                rest = bad.get(n..).unwrap_or(&[]);
            }
        }
    }
    s.push('"');
    s
}

fn push_escaped(s: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() => s.push_str(&format!("\\x{:02x}", c as u32)),
            c => s.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_invalid_escapes() {
        let m = invalid_literals(r#"count_values("a\xc5z", x) + f('ok\u00c5', `\xff`)"#);
        assert_eq!(m.len(), 1);
        assert_eq!(m.get("a\u{c5}z").map(String::as_str), Some(r#""a\xc5z""#));
        assert!(invalid_literals(r#"x{a="\xc3\xa5"}"#).is_empty());
    }
}
