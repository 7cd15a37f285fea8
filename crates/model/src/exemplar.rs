//! Exemplars: a sample of one series annotated with the labels of an event
//! that contributed to it, typically the trace and span it came from.

use crate::{Labels, TimestampMs};

/// OpenMetrics caps the combined length of an exemplar's label names and
/// values at 128 UTF-8 characters; Prometheus refuses longer ones.
pub const EXEMPLAR_MAX_LABEL_RUNES: usize = 128;

/// One exemplar: its own labels (`trace_id`, `span_id`, ...), the observed
/// value and when it was observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub t: TimestampMs,
}

/// An exemplar with the labels of the series it belongs to, as ingest
/// hands them to the store.
pub type SeriesExemplar = (Labels, Exemplar);

impl Exemplar {
    /// Characters (not bytes) of all label names and values together.
    pub fn label_runes(&self) -> usize {
        label_runes(&self.labels)
    }

    /// Is this the same exemplar as `other`? Values compare by bits, so a
    /// resent NaN is recognised as the same.
    pub fn same_as(&self, other: &Exemplar) -> bool {
        self.t == other.t
            && self.value.to_bits() == other.value.to_bits()
            && self.labels == other.labels
    }
}

/// Characters of all names and values of a label set.
pub fn label_runes(labels: &Labels) -> usize {
    labels
        .iter()
        .map(|l| l.name.chars().count() + l.value.chars().count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runes_count_characters_and_sameness_compares_bits() {
        let e = Exemplar {
            labels: Labels::from_pairs([("trace_id", "ä1")]),
            value: f64::NAN,
            t: 5,
        };
        assert_eq!(e.label_runes(), 10);
        assert!(e.same_as(&e.clone()));
        assert!(!e.same_as(&Exemplar { t: 6, ..e.clone() }));
    }
}
