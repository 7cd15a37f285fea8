//! The series selectors of a query, for APIs that look series up without
//! evaluating anything (`/api/v1/query_exemplars`, as Prometheus's
//! `parser.ExtractSelectors`).

use promql_parser::parser::Expr;
use promql_parser::util::{walk_expr, ExprVisitor};
use sonde_model::Matcher;

use crate::engine::{parse, selector_matchers};
use crate::{Error, Result};

/// Parses a PromQL expression and returns the matchers of each vector
/// selector in it (range selectors included), one set per selector; a
/// selector with `or` matchers gives one set per alternative.
pub fn extract_selectors(query: &str) -> Result<Vec<Vec<Matcher>>> {
    let expr = parse(query)?;
    let mut v = Collect(Vec::new());
    walk_expr(&mut v, &expr)?;
    Ok(v.0)
}

struct Collect(Vec<Vec<Matcher>>);

impl ExprVisitor for Collect {
    type Error = Error;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool> {
        let vs = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        if vs.matchers.or_matchers.is_empty() {
            self.0.push(selector_matchers(vs, &vs.matchers.matchers)?);
        } else {
            for group in &vs.matchers.or_matchers {
                self.0.push(selector_matchers(vs, group)?);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(query: &str) -> Vec<String> {
        extract_selectors(query)
            .unwrap()
            .iter()
            .map(|set| {
                let mut s: Vec<String> = set
                    .iter()
                    .map(|m| format!("{}{:?}{}", m.name, m.op, m.value))
                    .collect();
                s.sort();
                s.join(",")
            })
            .collect()
    }

    #[test]
    fn every_selector_of_an_expression_is_found() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.9, sum by (le) (rate(rpc_bucket{job="a"}[5m]))) / on() up"#
            ),
            vec![
                "__name__Equalrpc_bucket,jobEquala".to_string(),
                "__name__Equalup".to_string()
            ]
        );
        assert_eq!(
            names(r#"{a="1" or b=~"2.*"}"#),
            vec!["aEqual1".to_string(), "bRegexMatch2.*".to_string()]
        );
        assert!(names("1 + 2").is_empty());
        assert!(extract_selectors("rate(").is_err());
    }
}
