use regex::Regex;

use crate::{Error, Labels, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

/// A label matcher (`name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`).
/// Regexes are fully anchored, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Matcher> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => Some(
                Regex::new(&format!("^(?s:{value})$")).map_err(|e| Error::InvalidRegex {
                    label: name.clone(),
                    reason: e.to_string(),
                })?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            regex: None,
        }
    }

    /// Does a label value (empty when the label is absent) match?
    pub fn matches_value(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::RegexMatch => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::RegexNoMatch => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }

    /// Does this matcher accept a series that lacks the label?
    pub fn matches_empty(&self) -> bool {
        self.matches_value("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored_and_absent_label_is_empty() {
        let m = Matcher::new(MatchOp::RegexMatch, "job", "api|web").unwrap();
        assert!(m.matches_value("api"));
        assert!(!m.matches_value("xapi"));
        let l = Labels::from_pairs([("a", "1")]);
        assert!(Matcher::new(MatchOp::Equal, "job", "").unwrap().matches(&l));
        assert!(Matcher::new(MatchOp::RegexNoMatch, "job", ".+")
            .unwrap()
            .matches(&l));
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(matches!(
            Matcher::new(MatchOp::RegexMatch, "a", "("),
            Err(Error::InvalidRegex { .. })
        ));
    }
}
