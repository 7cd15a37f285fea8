//! MQTT topic templates: `plant/{site}/{line}/{device}/telemetry` names the
//! topic levels that become labels, so devices need not repeat in every
//! payload what their topic already says.
//!
//! A template is also the subscription: each `{name}` level becomes `+`, and
//! `+` and a final `#` are allowed as in MQTT, matching without capturing.
//! Placeholders must be whole levels (`dev-{id}` is refused rather than
//! half-supported), and their names must be valid label names.

use std::fmt;

use sonde_model::is_valid_label_name;

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Capture(String),
    /// `+`: any one level, not captured.
    Any,
    /// `#`: the remaining levels, zero or more.
    Rest,
}

/// A parsed topic template; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    template: String,
    levels: Vec<Level>,
    filter: String,
}

impl TopicTemplate {
    pub fn parse(template: &str) -> Result<TopicTemplate> {
        let fail = |reason: String| Error::InvalidTopicTemplate {
            template: template.to_string(),
            reason,
        };
        if template.is_empty() {
            return Err(fail("the template is empty".into()));
        }
        if template.contains('\0') {
            return Err(fail("the template contains a NUL character".into()));
        }
        let parts: Vec<&str> = template.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let level = match *part {
                "#" if i + 1 == parts.len() => Level::Rest,
                "#" => return Err(fail("`#` is only allowed as the last level".into())),
                "+" => Level::Any,
                p if p.starts_with('{') && p.ends_with('}') && p.len() >= 2 => {
                    let name = &p[1..p.len() - 1];
                    if name.is_empty() {
                        return Err(fail(format!("level {} has an empty name", i + 1)));
                    }
                    if !is_valid_label_name(name) || name.starts_with("__") {
                        return Err(fail(format!(
                            "{name:?} is not a valid label name: use [a-zA-Z_][a-zA-Z0-9_]* \
                             not starting with `__`"
                        )));
                    }
                    if levels.contains(&Level::Capture(name.to_string())) {
                        return Err(fail(format!("the name {name:?} is used twice")));
                    }
                    Level::Capture(name.to_string())
                }
                p if p.contains(['{', '}', '+', '#']) => {
                    return Err(fail(format!(
                        "level {p:?} mixes text with `{{`, `}}`, `+` or `#`: \
                         a placeholder or wildcard must be a whole level"
                    )))
                }
                p => Level::Literal(p.to_string()),
            };
            levels.push(level);
        }
        let filter = levels
            .iter()
            .map(|l| match l {
                Level::Literal(s) => s.as_str(),
                Level::Capture(_) | Level::Any => "+",
                Level::Rest => "#",
            })
            .collect::<Vec<_>>()
            .join("/");
        Ok(TopicTemplate {
            template: template.to_string(),
            levels,
            filter,
        })
    }

    /// The MQTT subscription filter that receives the topics of this
    /// template.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The names of the placeholders, in template order.
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().filter_map(|l| match l {
            Level::Capture(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// The placeholder values of `topic` in template order, or `None` when
    /// the topic does not match. A placeholder may capture an empty level
    /// (as `+` matches one); the label is then absent, as with any empty
    /// label value. As MQTT requires, a wildcard first level does not match
    /// a topic starting with `$` (`$SYS/...`).
    pub fn labels(&self, topic: &str) -> Option<Vec<(String, String)>> {
        if topic.starts_with('$') && !matches!(self.levels.first(), Some(Level::Literal(_))) {
            return None;
        }
        let mut out = Vec::new();
        let mut parts = topic.split('/');
        for level in &self.levels {
            match level {
                // `a/#` also matches `a`, its parent level.
                Level::Rest => return Some(out),
                Level::Literal(l) => {
                    if parts.next()? != l {
                        return None;
                    }
                }
                Level::Any => {
                    parts.next()?;
                }
                Level::Capture(name) => out.push((name.clone(), parts.next()?.to_string())),
            }
        }
        parts.next().is_none().then_some(out)
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

impl std::str::FromStr for TopicTemplate {
    type Err = Error;

    fn from_str(s: &str) -> Result<TopicTemplate> {
        TopicTemplate::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn reason(template: &str) -> String {
        match TopicTemplate::parse(template) {
            Err(Error::InvalidTopicTemplate {
                template: t,
                reason,
            }) => {
                assert_eq!(t, template);
                reason
            }
            other => panic!("{template:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn placeholders_become_single_level_wildcards() {
        let cases = [
            (
                "plant/{site}/{line}/{device}/telemetry",
                "plant/+/+/+/telemetry",
            ),
            ("plant/{site}/#", "plant/+/#"),
            ("+/{device}/+", "+/+/+"),
            ("#", "#"),
            ("sensors", "sensors"),
            ("a//{b}", "a//+"),
        ];
        for (template, filter) in cases {
            let t = TopicTemplate::parse(template).unwrap();
            assert_eq!(t.filter(), filter, "{template}");
            assert_eq!(t.to_string(), template);
        }
    }

    #[test]
    fn labels_are_taken_by_name_in_template_order() {
        let t: TopicTemplate = "plant/{site}/{line}/{device}/telemetry".parse().unwrap();
        assert_eq!(
            t.label_names().collect::<Vec<_>>(),
            ["site", "line", "device"]
        );
        assert_eq!(
            t.labels("plant/lyon/l2/press-7/telemetry"),
            Some(pairs(&[
                ("site", "lyon"),
                ("line", "l2"),
                ("device", "press-7")
            ]))
        );
        assert_eq!(
            t.labels("plant/lyon//press-7/telemetry"),
            Some(pairs(&[
                ("site", "lyon"),
                ("line", ""),
                ("device", "press-7")
            ]))
        );
    }

    #[test]
    fn topics_that_do_not_match_give_none() {
        let t = TopicTemplate::parse("plant/{site}/{device}/telemetry").unwrap();
        for topic in [
            "plant/lyon/d1/status",
            "plant/lyon/d1",
            "plant/lyon/d1/telemetry/extra",
            "factory/lyon/d1/telemetry",
            "",
            "plant",
        ] {
            assert_eq!(t.labels(topic), None, "{topic}");
        }
    }

    #[test]
    fn wildcards_match_without_capturing() {
        let t = TopicTemplate::parse("+/{device}/#").unwrap();
        assert_eq!(t.labels("x/d1"), Some(pairs(&[("device", "d1")])));
        assert_eq!(t.labels("x/d1/a/b/c"), Some(pairs(&[("device", "d1")])));
        assert_eq!(t.labels("x"), None);
        let all = TopicTemplate::parse("#").unwrap();
        assert_eq!(all.labels("a/b"), Some(vec![]));
        assert_eq!(all.labels(""), Some(vec![]));
    }

    #[test]
    fn system_topics_do_not_match_a_leading_wildcard() {
        assert_eq!(TopicTemplate::parse("#").unwrap().labels("$SYS/x"), None);
        assert_eq!(
            TopicTemplate::parse("{a}/x").unwrap().labels("$SYS/x"),
            None
        );
        assert_eq!(
            TopicTemplate::parse("$SYS/{what}")
                .unwrap()
                .labels("$SYS/uptime"),
            Some(pairs(&[("what", "uptime")]))
        );
    }

    #[test]
    fn invalid_templates_are_refused_with_a_reason() {
        assert!(reason("").contains("empty"));
        assert!(reason("a/#/b").contains("last level"));
        assert!(reason("a/{}/b").contains("empty name"));
        assert!(reason("a/{x}/{x}").contains("used twice"));
        assert!(reason("a/{1x}").contains("not a valid label name"));
        assert!(reason("a/{dev-id}").contains("not a valid label name"));
        assert!(reason("a/{__name__}").contains("not a valid label name"));
        assert!(reason("a/dev-{id}").contains("whole level"));
        assert!(reason("a/{id").contains("whole level"));
        assert!(reason("a/b+").contains("whole level"));
        assert!(reason("a/b#").contains("whole level"));
        assert!(reason("a\0b").contains("NUL"));
    }

    #[test]
    fn error_message_names_the_template() {
        let e = TopicTemplate::parse("a/#/b").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid mqtt topic template \"a/#/b\": `#` is only allowed as the last level"
        );
    }
}
