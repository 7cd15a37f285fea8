//! The names of every series the pipeline derives, and the one definition
//! of a request. Everything that queries derived series (the service map,
//! the built-in anomaly rules, the overview, the demo's rules) builds its
//! PromQL from these.
//!
//! The names follow the OpenTelemetry Collector's `spanmetrics` and
//! `servicegraph` connectors, so dashboards built for them work.

use sonde_model::records::{SpanKind, StatusCode};

/// Calls per `service_name`, `span_name`, `span_kind`, `status_code`.
pub const SPAN_CALLS: &str = "traces_span_metrics_calls_total";
/// Histogram (`_bucket`, `_sum`, `_count`) of span durations, same labels.
pub const SPAN_DURATION: &str = "traces_span_metrics_duration_seconds";
/// Calls per `client`, `server`, `connection_type`.
pub const GRAPH_REQUESTS: &str = "traces_service_graph_request_total";
pub const GRAPH_REQUESTS_FAILED: &str = "traces_service_graph_request_failed_total";
/// Histograms of each side's duration of a call.
pub const GRAPH_CLIENT_SECONDS: &str = "traces_service_graph_request_client_seconds";
pub const GRAPH_SERVER_SECONDS: &str = "traces_service_graph_request_server_seconds";

/// Seconds of own time on traces' critical paths, per `root_service`,
/// `root_operation` (the trace's entry) and the `service` and `operation`
/// that spent them; weighted by sampling probability.
pub const CRITICAL_PATH_SECONDS: &str = "sonde_critical_path_seconds_total";
/// Traces whose critical path was measured, per `root_service` and
/// `root_operation`.
pub const CRITICAL_PATH_TRACES: &str = "sonde_critical_path_traces_total";
pub const LABEL_ROOT_SERVICE: &str = "root_service";
pub const LABEL_ROOT_OPERATION: &str = "root_operation";

pub const LABEL_SERVICE: &str = "service_name";
pub const LABEL_SPAN_NAME: &str = "span_name";
pub const LABEL_SPAN_KIND: &str = "span_kind";
pub const LABEL_STATUS: &str = "status_code";

/// A request is work a service takes in: a call it serves or a message it
/// consumes. Its own outgoing calls (CLIENT, PRODUCER) and internal spans
/// are not requests, or one request would count several times.
pub fn is_request(kind: SpanKind) -> bool {
    matches!(kind, SpanKind::Server | SpanKind::Consumer)
}

/// [`is_request`] as a PromQL label matcher on [`SPAN_CALLS`] and
/// [`SPAN_DURATION`].
pub const REQUEST_MATCHER: &str = r#"span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER""#;
/// Failed spans, as a PromQL label matcher.
pub const ERROR_MATCHER: &str = r#"status_code="STATUS_CODE_ERROR""#;

/// `name{matchers}` with the request matcher and any more.
pub fn requests(name: &str, more: &[&str]) -> String {
    let mut m = vec![REQUEST_MATCHER];
    m.extend_from_slice(more);
    format!("{name}{{{}}}", m.join(","))
}

pub fn bucket(name: &str) -> String {
    format!("{name}_bucket")
}

pub fn kind_label(k: SpanKind) -> &'static str {
    match k {
        SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
        SpanKind::Internal => "SPAN_KIND_INTERNAL",
        SpanKind::Server => "SPAN_KIND_SERVER",
        SpanKind::Client => "SPAN_KIND_CLIENT",
        SpanKind::Producer => "SPAN_KIND_PRODUCER",
        SpanKind::Consumer => "SPAN_KIND_CONSUMER",
    }
}

pub fn status_label(s: StatusCode) -> &'static str {
    match s {
        StatusCode::Unset => "STATUS_CODE_UNSET",
        StatusCode::Ok => "STATUS_CODE_OK",
        StatusCode::Error => "STATUS_CODE_ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_matcher_selects_exactly_the_request_kinds() {
        for kind in SpanKind::ALL {
            let label = kind_label(kind);
            let alternatives = REQUEST_MATCHER
                .split('"')
                .nth(1)
                .unwrap()
                .split('|')
                .collect::<Vec<_>>();
            assert_eq!(alternatives.contains(&label), is_request(kind), "{label}");
        }
        assert_eq!(
            requests(SPAN_CALLS, &[ERROR_MATCHER]),
            r#"traces_span_metrics_calls_total{span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER",status_code="STATUS_CODE_ERROR"}"#
        );
    }
}
