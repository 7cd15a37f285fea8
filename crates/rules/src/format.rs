//! Go's number and `printf` formatting, and Prometheus's `humanize`
//! functions, as alert templates print them.

use std::fmt::Write;

use super::template::Val;

pub fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric() && c != '_' && c != '\'';
    }
    out
}

pub fn strip_port(s: &str) -> String {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((host, port)) = rest.split_once("]:") {
            if port.chars().all(|c| c.is_ascii_digit()) {
                return host.to_string();
            }
        }
        return s.to_string();
    }
    match s.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host.to_string(),
        _ => s.to_string(),
    }
}

pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_float(v, 'g', Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_float(v, 'g', Some(4)))
}

pub fn humanize_1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_float(v, 'g', Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_float(v, 'g', Some(4)))
}

pub fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_float(v, 'g', Some(4));
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", go_float(v, 'g', Some(4)))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_float(v, 'g', Some(4)))
}

pub fn humanize_timestamp(v: f64) -> String {
    if !v.is_finite() {
        return go_float(v, 'g', Some(4));
    }
    let ms = (v * 1000.0).round() as i64;
    let s = super::rfc3339(ms);
    // Go's time.String(): "2006-01-02 15:04:05.999 +0000 UTC".
    format!(
        "{} +0000 UTC",
        s.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %q %d %f %e %g
/// %x %%` with flags `-+0 `, width and precision.
pub fn printf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        let width = num(&mut chars);
        let prec = if chars.peek() == Some(&'.') {
            chars.next();
            Some(num(&mut chars).unwrap_or(0))
        } else {
            None
        };
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let mut s = match (verb, arg) {
            ('d', v) => match v.to_f64() {
                Ok(n) => format!("{}", n.trunc() as i64),
                Err(_) => format!("%!d({})", v.print()),
            },
            ('f' | 'F' | 'e' | 'E' | 'g' | 'G', v) => match v.to_f64() {
                Ok(n) => {
                    let lower = verb.to_ascii_lowercase();
                    let p = if lower == 'g' { prec } else { prec.or(Some(6)) };
                    let s = go_float(n, lower, p);
                    if verb.is_ascii_uppercase() {
                        s.to_uppercase()
                    } else {
                        s
                    }
                }
                Err(_) => format!("%!{verb}({})", v.print()),
            },
            ('x' | 'X', Val::Num(n)) => {
                let s = format!("{:x}", n.trunc() as i64);
                if verb == 'X' {
                    s.to_uppercase()
                } else {
                    s
                }
            }
            ('x', v) => v.print().bytes().map(|b| format!("{b:02x}")).collect(),
            ('q', v) => serde_json::to_string(&v.print()).unwrap_or_default(),
            (_, v) => {
                let s = v.print();
                match prec {
                    Some(p) if verb == 's' => s.chars().take(p).collect(),
                    _ => s,
                }
            }
        };
        let numeric = matches!(verb, 'd' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G');
        if numeric && !s.starts_with('-') && !s.starts_with('+') {
            if plus {
                s.insert(0, '+');
            } else if space {
                s.insert(0, ' ');
            }
        }
        let len = s.chars().count();
        match width {
            Some(w) if w > len => {
                let pad = w - len;
                if minus {
                    s.push_str(&" ".repeat(pad));
                } else if zero && numeric && !s.contains("Inf") && !s.contains("NaN") {
                    let sign = usize::from(s.starts_with(['-', '+', ' ']));
                    s.insert_str(sign, &"0".repeat(pad));
                } else {
                    s.insert_str(0, &" ".repeat(pad));
                }
            }
            _ => {}
        }
        out.push_str(&s);
    }
    for extra in args {
        let _ = write!(out, "%!(EXTRA {})", extra.print());
    }
    out
}

/// Go's `strconv.FormatFloat` for `'e'`, `'f'` and `'g'` (`prec` None is
/// the shortest exact representation), with fmt's signs for infinities.
pub fn go_float(v: f64, verb: char, prec: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    match verb {
        'f' => format!("{:.*}", prec.unwrap_or(6), v),
        'e' => {
            let s = match prec {
                Some(p) => format!("{:.*e}", p, v),
                None => format!("{v:e}"),
            };
            go_exponent(&s)
        }
        _ => {
            // Digits rounded to the precision, trailing zeros dropped.
            let neg = v.is_sign_negative() && v != 0.0;
            let (digits, dp) = if v == 0.0 {
                (String::new(), 0)
            } else {
                let s = match prec {
                    Some(p) => format!("{:.*e}", p.max(1) - 1, v.abs()),
                    None => format!("{:e}", v.abs()),
                };
                let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
                let exp: i32 = exp.parse().unwrap_or(0);
                let d: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
                (d.trim_end_matches('0').to_string(), exp + 1)
            };
            let nd = digits.len() as i32;
            let shortest = prec.is_none();
            let mut p = prec.map_or(nd, |p| p.max(1) as i32);
            let mut eprec = p;
            if eprec > nd && nd >= dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = dp - 1;
            let body = if exp < -4 || exp >= eprec {
                if p > nd {
                    p = nd;
                }
                fmt_e(&digits, dp, (p - 1).max(0) as usize)
            } else {
                if p > dp {
                    p = nd;
                }
                fmt_f(&digits, dp, (p - dp).max(0) as usize)
            };
            if neg {
                format!("-{body}")
            } else {
                body
            }
        }
    }
}

fn go_exponent(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s.to_string(),
    }
}

fn digit(digits: &[u8], i: i32) -> char {
    if i >= 0 && (i as usize) < digits.len() {
        digits[i as usize] as char
    } else {
        '0'
    }
}

fn fmt_e(digits: &str, dp: i32, prec: usize) -> String {
    let d = digits.as_bytes();
    let mut s = String::new();
    s.push(digit(d, 0));
    if prec > 0 {
        s.push('.');
        for i in 1..=prec as i32 {
            s.push(digit(d, i));
        }
    }
    let exp = if d.is_empty() { 0 } else { dp - 1 };
    let _ = write!(
        s,
        "e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.unsigned_abs()
    );
    s
}

fn fmt_f(digits: &str, dp: i32, prec: usize) -> String {
    let d = digits.as_bytes();
    let mut s = String::new();
    if dp > 0 {
        for i in 0..dp {
            s.push(digit(d, i));
        }
    } else {
        s.push('0');
    }
    if prec > 0 {
        s.push('.');
        for i in 0..prec as i32 {
            s.push(digit(d, dp + i));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_number_formatting() {
        assert_eq!(go_float(0.5, 'g', None), "0.5");
        assert_eq!(go_float(100.0, 'g', None), "100");
        assert_eq!(go_float(1234567.0, 'g', None), "1.234567e+06");
        assert_eq!(go_float(1e6, 'g', None), "1e+06");
        assert_eq!(go_float(0.0001, 'g', None), "0.0001");
        assert_eq!(go_float(0.00001, 'g', None), "1e-05");
        assert_eq!(go_float(1234.0, 'g', Some(4)), "1234");
        assert_eq!(go_float(12345.0, 'g', Some(4)), "1.234e+04");
        assert_eq!(go_float(1.5, 'g', Some(4)), "1.5");
        assert_eq!(go_float(0.0, 'g', Some(4)), "0");
        assert_eq!(go_float(-2.5, 'g', None), "-2.5");
        assert_eq!(go_float(2.7, 'e', None), "2.7e+00");
        assert_eq!(go_float(1234.5, 'e', None), "1.2345e+03");
        assert_eq!(go_float(f64::INFINITY, 'g', None), "+Inf");
    }

    #[test]
    fn prometheus_functions() {
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(0.0012), "1.2m");
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(999.0), "999");
        assert_eq!(humanize_1024(2048.0), "2ki");
        assert_eq!(humanize_duration(3661.0), "1h 1m 1s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.25), "250ms");
        assert_eq!(
            humanize_timestamp(1_700_000_000.0),
            "2023-11-14 22:13:20 +0000 UTC"
        );
        assert_eq!(strip_port("db-1:9100"), "db-1");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(title("hello wide world"), "Hello Wide World");
    }

    #[test]
    fn printf_verbs() {
        assert_eq!(printf("%.2f", &[Val::Num(1.23456)]), "1.23");
        assert_eq!(printf("%d%%", &[Val::Num(42.9)]), "42%");
        assert_eq!(
            printf("%5.1f|%-4s|", &[Val::Num(2.0), Val::Str("ab".into())]),
            "  2.0|ab  |"
        );
        assert_eq!(
            printf("%s is %v", &[Val::Str("x".into()), Val::Num(0.5)]),
            "x is 0.5"
        );
        assert_eq!(printf("%q", &[Val::Str("a\"b".into())]), "\"a\\\"b\"");
        assert_eq!(printf("%05.1f", &[Val::Num(-2.0)]), "-02.0");
        assert_eq!(printf("%s", &[]), "%!s(MISSING)");
    }
}
