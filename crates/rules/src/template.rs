//! Annotation and label templates: the part of Go's `text/template` and of
//! Prometheus's template functions that alert rules use in practice.
//!
//! Supported: text with `{{ ... }}` actions (`{{-`/`-}}` trim spaces,
//! `{{/* comments */}}`); the variables `$labels`, `$value`,
//! `$externalLabels`, `$externalURL` (and `.Labels`, `.Value`, ...) plus any
//! extra ones a rule kind provides (anomaly rules: `$observed`,
//! `$expected_low`, `$expected_high`, `$explanation`); field access
//! (`$labels.job`); string, number and boolean literals; pipelines
//! (`$value | humanize`); parenthesised sub-pipelines; `if`/`else if`/`else`/
//! `end`; and the functions `humanize`, `humanize1024`, `humanizeDuration`,
//! `humanizePercentage`, `humanizeTimestamp`, `printf`, `toUpper`,
//! `toLower`, `title`, `stripPort`, `match`, `reReplaceAll`, `index`, `len`,
//! `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `and`, `or`, `not`.
//! Not supported: `range`, `with`, variable assignment, `define`/`template`,
//! and the functions that query (`query`, `first`, `value`, `label`,
//! `sortByLabel`) or build links (`graphLink`, `tableLink`, `pathPrefix`).

use super::format::{
    go_float, humanize, humanize_1024, humanize_duration, humanize_timestamp, printf, strip_port,
    title,
};

/// A value as templates see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Num(f64),
    Bool(bool),
    /// A label map, sorted by name.
    Map(Vec<(String, String)>),
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::Str(s) => !s.is_empty(),
            Val::Num(n) => *n != 0.0,
            Val::Bool(b) => *b,
            Val::Map(m) => !m.is_empty(),
        }
    }

    /// Go's `%v`.
    pub fn print(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Num(n) => go_float(*n, 'g', None),
            Val::Bool(b) => b.to_string(),
            Val::Map(m) => {
                let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", items.join(" "))
            }
        }
    }

    /// Prometheus's `convertToFloat`.
    pub fn to_f64(&self) -> Result<f64, String> {
        match self {
            Val::Num(n) => Ok(*n),
            Val::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("cannot convert {s:?} to a number")),
            other => Err(format!("cannot convert {} to a number", other.print())),
        }
    }
}

/// The variables of one expansion, by name without the `$`.
pub type Vars<'a> = &'a [(&'a str, Val)];

#[derive(Debug, Clone)]
enum Arg {
    /// `$name.field.field`
    Var(String, Vec<String>),
    Str(String),
    Num(f64),
    Bool(bool),
    Func(String),
    Sub(Pipeline),
}

type Cmd = Vec<Arg>;
type Pipeline = Vec<Cmd>;

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Vec<(Pipeline, Vec<Node>)>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
    source: String,
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let items = split(text)?;
        let mut pos = 0;
        let (nodes, end) = parse_nodes(&items, &mut pos)?;
        if let Some(e) = end {
            return Err(format!("unexpected {{{{{e}}}}}"));
        }
        Ok(Template {
            nodes,
            source: text.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Expands the template; an error is rendered as Prometheus renders it.
    pub fn expand(&self, vars: Vars) -> String {
        let mut out = String::new();
        match run(&self.nodes, vars, &mut out) {
            Ok(()) => out,
            Err(e) => format!("<error expanding template: {e}>"),
        }
    }
}

enum Item {
    Text(String),
    Action(String),
}

/// Splits text and actions, applying the trim markers.
fn split(text: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let mut lit = &rest[..open];
        let mut body = &rest[open + 2..];
        if body.starts_with("- ") || body.starts_with("-\t") || body.starts_with("-\n") {
            lit = lit.trim_end();
            body = &body[1..];
        }
        if !lit.is_empty() {
            items.push(Item::Text(lit.to_string()));
        }
        let close = find_close(body).ok_or("unclosed action: missing }}")?;
        let mut inner = &body[..close];
        rest = &body[close + 2..];
        if inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-") {
            inner = &inner[..inner.len() - 1];
            rest = rest.trim_start();
        }
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            items.push(Item::Action(inner.to_string()));
        }
    }
    if !rest.is_empty() {
        items.push(Item::Text(rest.to_string()));
    }
    Ok(items)
}

/// The `}}` closing an action, skipping quoted strings.
fn find_close(body: &str) -> Option<usize> {
    let b = body.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses nodes until `else ...` or `end`, which is returned.
fn parse_nodes(items: &[Item], pos: &mut usize) -> Result<(Vec<Node>, Option<String>), String> {
    let mut nodes = Vec::new();
    while *pos < items.len() {
        let item = &items[*pos];
        *pos += 1;
        match item {
            Item::Text(t) => nodes.push(Node::Text(t.clone())),
            Item::Action(a) => {
                let word = a.split_whitespace().next().unwrap_or("");
                match word {
                    "end" | "else" => return Ok((nodes, Some(a.clone()))),
                    "if" => nodes.push(parse_if(a[2..].trim(), items, pos)?),
                    "range" | "with" | "define" | "template" | "block" => {
                        return Err(format!("{word:?} is not supported in Sonde's templates"))
                    }
                    _ => nodes.push(Node::Action(parse_pipeline(a)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_if(cond: &str, items: &[Item], pos: &mut usize) -> Result<Node, String> {
    let mut branches = Vec::new();
    let mut cond = parse_pipeline(cond)?;
    loop {
        let (body, end) = parse_nodes(items, pos)?;
        branches.push((cond, body));
        let end = end.ok_or("if without end")?;
        if end == "end" {
            return Ok(Node::If(branches, Vec::new()));
        }
        let rest = end["else".len()..].trim();
        if let Some(c) = rest.strip_prefix("if ") {
            cond = parse_pipeline(c)?;
            continue;
        }
        if !rest.is_empty() {
            return Err(format!("unexpected {{{{{end}}}}}"));
        }
        let (otherwise, end) = parse_nodes(items, pos)?;
        if end.as_deref() != Some("end") {
            return Err("else without end".into());
        }
        return Ok(Node::If(branches, otherwise));
    }
}

fn parse_pipeline(s: &str) -> Result<Pipeline, String> {
    let tokens = lex(s)?;
    let mut pos = 0;
    let p = pipeline(&tokens, &mut pos)?;
    if pos != tokens.len() {
        return Err(format!("unexpected {:?} in {s:?}", tokens[pos]));
    }
    Ok(p)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Var(String, Vec<String>),
    Field(Vec<String>),
    Str(String),
    Num(f64),
    Ident(String),
    Pipe,
    Open,
    Close,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    let fields = |i: &mut usize| {
        let mut f = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            *i += 1;
            let start = *i;
            while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
                *i += 1;
            }
            if *i > start {
                f.push(chars[start..*i].iter().collect::<String>());
            }
        }
        f
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            '$' => {
                i += 1;
                let name = word(&mut i);
                out.push(Tok::Var(name, fields(&mut i)));
            }
            '.' => out.push(Tok::Field(fields(&mut i))),
            '"' => {
                i += 1;
                let mut v = String::new();
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                        v.push(match chars[i] {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    } else {
                        v.push(chars[i]);
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated string".into());
                }
                i += 1;
                out.push(Tok::Str(v));
            }
            '`' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated raw string".into());
                }
                out.push(Tok::Str(chars[start..i].iter().collect()));
                i += 1;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n = text
                    .replace('_', "")
                    .parse::<f64>()
                    .map_err(|_| format!("bad number {text:?}"))?;
                out.push(Tok::Num(n));
            }
            c if c.is_alphabetic() || c == '_' => out.push(Tok::Ident(word(&mut i))),
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    Ok(out)
}

fn pipeline(t: &[Tok], pos: &mut usize) -> Result<Pipeline, String> {
    let mut cmds = Vec::new();
    let mut cmd: Cmd = Vec::new();
    while *pos < t.len() {
        let tok = &t[*pos];
        *pos += 1;
        match tok {
            Tok::Close => {
                *pos -= 1;
                break;
            }
            Tok::Pipe => {
                if cmd.is_empty() {
                    return Err("missing command before |".into());
                }
                cmds.push(std::mem::take(&mut cmd));
            }
            Tok::Open => {
                let sub = pipeline(t, pos)?;
                if t.get(*pos) != Some(&Tok::Close) {
                    return Err("unclosed (".into());
                }
                *pos += 1;
                cmd.push(Arg::Sub(sub));
            }
            Tok::Var(n, f) => cmd.push(Arg::Var(n.clone(), f.clone())),
            Tok::Field(f) => cmd.push(field_arg(f)),
            Tok::Str(s) => cmd.push(Arg::Str(s.clone())),
            Tok::Num(n) => cmd.push(Arg::Num(*n)),
            Tok::Ident(w) => cmd.push(match w.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                f if FUNCTIONS.contains(&f) => Arg::Func(f.to_string()),
                f => return Err(format!("function {f:?} not defined")),
            }),
        }
    }
    if cmd.is_empty() {
        return Err("missing value".into());
    }
    cmds.push(cmd);
    Ok(cmds)
}

/// `.Labels.x` is `$labels.x`: the dot's fields are the variables with the
/// first letter lowered.
fn field_arg(fields: &[String]) -> Arg {
    match fields.split_first() {
        None => Arg::Var("labels".into(), Vec::new()),
        Some((first, rest)) => {
            let mut c = first.chars();
            let name = match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => String::new(),
            };
            Arg::Var(name, rest.to_vec())
        }
    }
}

const FUNCTIONS: &[&str] = &[
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "printf",
    "toUpper",
    "toLower",
    "title",
    "stripPort",
    "match",
    "reReplaceAll",
    "index",
    "len",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
];

fn run(nodes: &[Node], vars: Vars, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&eval_pipeline(p, vars)?.print()),
            Node::If(branches, otherwise) => {
                let mut done = false;
                for (cond, body) in branches {
                    if eval_pipeline(cond, vars)?.truthy() {
                        run(body, vars, out)?;
                        done = true;
                        break;
                    }
                }
                if !done {
                    run(otherwise, vars, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval_pipeline(p: &Pipeline, vars: Vars) -> Result<Val, String> {
    let mut piped: Option<Val> = None;
    for cmd in p {
        let mut args: Vec<Val> = Vec::with_capacity(cmd.len());
        let (func, rest) = match &cmd[0] {
            Arg::Func(f) => (Some(f.as_str()), &cmd[1..]),
            _ => (None, &cmd[..]),
        };
        for a in rest {
            args.push(eval_arg(a, vars)?);
        }
        args.extend(piped.take());
        piped = Some(match func {
            Some(f) => call(f, args)?,
            None if args.len() == 1 => args.remove(0),
            None => return Err("can't give argument to non-function".into()),
        });
    }
    piped.ok_or_else(|| "empty pipeline".into())
}

fn eval_arg(a: &Arg, vars: Vars) -> Result<Val, String> {
    Ok(match a {
        Arg::Str(s) => Val::Str(s.clone()),
        Arg::Num(n) => Val::Num(*n),
        Arg::Bool(b) => Val::Bool(*b),
        Arg::Sub(p) => eval_pipeline(p, vars)?,
        Arg::Func(f) => call(f, Vec::new())?,
        Arg::Var(name, fields) => {
            let v = vars
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("undefined variable \"${name}\""))?;
            match (fields.as_slice(), v) {
                ([], v) => v,
                ([f], Val::Map(m)) => Val::Str(lookup(&m, f)),
                (_, v) => return Err(format!("can't evaluate field {fields:?} of {}", v.print())),
            }
        }
    })
}

fn lookup(m: &[(String, String)], key: &str) -> String {
    m.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn arity(f: &str, args: &[Val], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {f}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn call(f: &str, mut args: Vec<Val>) -> Result<Val, String> {
    let str_arg = |v: &Val| match v {
        Val::Str(s) => s.clone(),
        other => other.print(),
    };
    Ok(match f {
        "printf" => {
            if args.is_empty() {
                return Err("wrong number of args for printf".into());
            }
            let fmt = str_arg(&args.remove(0));
            Val::Str(printf(&fmt, &args))
        }
        "and" | "or" => {
            if args.is_empty() {
                return Err(format!("wrong number of args for {f}"));
            }
            let want = f == "or";
            let last = args.len() - 1;
            let i = args.iter().position(|a| a.truthy() == want).unwrap_or(last);
            args.swap_remove(i)
        }
        "not" => {
            arity(f, &args, 1)?;
            Val::Bool(!args[0].truthy())
        }
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(f, &args, 2)?;
            let ord = match (&args[0], &args[1]) {
                (Val::Num(a), Val::Num(b)) => a.partial_cmp(b),
                (Val::Str(a), Val::Str(b)) => Some(a.cmp(b)),
                (Val::Bool(a), Val::Bool(b)) if f == "eq" || f == "ne" => Some(a.cmp(b)),
                _ => return Err(format!("incompatible types for comparison in {f}")),
            };
            use std::cmp::Ordering::*;
            Val::Bool(match f {
                "eq" => ord == Some(Equal),
                "ne" => ord != Some(Equal),
                "lt" => ord == Some(Less),
                "le" => matches!(ord, Some(Less | Equal)),
                "gt" => ord == Some(Greater),
                _ => matches!(ord, Some(Greater | Equal)),
            })
        }
        "index" => {
            arity(f, &args, 2)?;
            match (&args[0], &args[1]) {
                (Val::Map(m), k) => Val::Str(lookup(m, &str_arg(k))),
                _ => return Err("index of a value that is not a map".into()),
            }
        }
        "len" => {
            arity(f, &args, 1)?;
            Val::Num(match &args[0] {
                Val::Map(m) => m.len(),
                Val::Str(s) => s.len(),
                _ => return Err("len of a number".into()),
            } as f64)
        }
        "toUpper" | "toLower" | "title" | "stripPort" => {
            arity(f, &args, 1)?;
            let s = str_arg(&args[0]);
            Val::Str(match f {
                "toUpper" => s.to_uppercase(),
                "toLower" => s.to_lowercase(),
                "title" => title(&s),
                _ => strip_port(&s),
            })
        }
        "match" => {
            arity(f, &args, 2)?;
            let re = regex::Regex::new(&str_arg(&args[0])).map_err(|e| e.to_string())?;
            Val::Bool(re.is_match(&str_arg(&args[1])))
        }
        "reReplaceAll" => {
            arity(f, &args, 3)?;
            let re = regex::Regex::new(&str_arg(&args[0])).map_err(|e| e.to_string())?;
            let repl = str_arg(&args[1]);
            Val::Str(
                re.replace_all(&str_arg(&args[2]), repl.as_str())
                    .into_owned(),
            )
        }
        _ => {
            arity(f, &args, 1)?;
            let v = args[0].to_f64()?;
            Val::Str(match f {
                "humanize" => humanize(v),
                "humanize1024" => humanize_1024(v),
                "humanizeDuration" => humanize_duration(v),
                "humanizePercentage" => format!("{}%", go_float(v * 100.0, 'g', Some(4))),
                "humanizeTimestamp" => humanize_timestamp(v),
                other => return Err(format!("function {other:?} not defined")),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(t: &str, value: f64) -> String {
        let labels = Val::Map(vec![
            ("instance".into(), "db-1:9100".into()),
            ("job".into(), "node".into()),
        ]);
        let vars = [("labels", labels), ("value", Val::Num(value))];
        Template::parse(t).unwrap().expand(&vars)
    }

    #[test]
    fn expands_alert_templates() {
        assert_eq!(
            expand(
                "{{ $labels.instance }} of {{ .Labels.job }} is at {{ $value }}",
                0.5
            ),
            "db-1:9100 of node is at 0.5"
        );
        assert_eq!(expand("{{ $value | humanize }}B", 2_500_000.0), "2.5MB");
        assert_eq!(expand(r#"{{ printf "%.2f" $value }}"#, 1.0 / 3.0), "0.33");
        assert_eq!(
            expand("{{ $labels.instance | stripPort | toUpper }}", 0.0),
            "DB-1"
        );
        assert_eq!(expand("{{ $labels.missing }}.", 0.0), ".");
        assert_eq!(
            expand(r#"{{ index $labels "job" }} {{ len $labels }}"#, 0.0),
            "node 2"
        );
        assert_eq!(
            expand(
                r#"{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}"#,
                60.0
            ),
            "mid"
        );
        assert_eq!(
            expand("a  {{- /* note */ -}}  b {{- $value -}} \n c", 1.0),
            "ab1c"
        );
        assert_eq!(
            expand(r#"{{ printf "%s!" (humanizePercentage $value) }}"#, 0.5),
            "50%!"
        );
        assert_eq!(
            expand(r#"{{ reReplaceAll ":.*" "" $labels.instance }}"#, 0.0),
            "db-1"
        );
    }

    #[test]
    fn errors_are_reported() {
        assert!(Template::parse("{{ $value ").is_err());
        assert!(Template::parse("{{ nosuch $value }}").is_err());
        assert!(Template::parse("{{ if $value }}x").is_err());
        assert!(Template::parse("{{ range $labels }}{{ end }}").is_err());
        let t = Template::parse("{{ $nosuch }}").unwrap();
        assert_eq!(
            t.expand(&[]),
            "<error expanding template: undefined variable \"$nosuch\">"
        );
    }
}
