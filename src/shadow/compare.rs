//! How one live answer and one shadow answer for the same item differ: top-1 agreement, top-k
//! overlap and the shadow's score for the live winner. Pure functions of two answers; the caller
//! adds the latencies and the time.

use crate::ensemble::ItemAnswer;

/// One mirrored item, compared (or failed on the shadow side). What the statistics are built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The live answer's winner; None when it abstained (or the caller's candidates left nothing).
    pub live_top: Option<String>,
    pub outcome: Outcome,
    /// Seconds the live request spent on the compute pool.
    pub live_seconds: f64,
}

/// What the shadow did with the item.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Answered {
        agreement: Agreement,
        /// Seconds the shadow's batch spent on the compute pool.
        shadow_seconds: f64,
    },
    /// The shadow could not answer: the item does not fit it, or one of its models failed.
    Failed { reason: String },
}

/// How two answers for one item agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub shadow_top: Option<String>,
    /// Both winners are the same label (or both abstained).
    pub top1: bool,
    /// Share of the live answer's first `k` labels that are among the shadow's first `k`, where
    /// `k` is the compared depth capped by the live answer's length; None when the live answer is
    /// empty.
    pub overlap: Option<f64>,
    /// The shadow's score for the live winner: None when live abstained; `Some(None)` when the
    /// winner is not among the labels the shadow answered (its score is then below all of them).
    pub live_winner_score: Option<Option<f32>>,
}

impl Comparison {
    /// The shadow's winner, when it answered.
    pub fn shadow_top(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Answered { agreement, .. } => agreement.shadow_top.as_deref(),
            Outcome::Failed { .. } => None,
        }
    }

    /// Top-1 agreement, when the shadow answered.
    pub fn agreed(&self) -> Option<bool> {
        match &self.outcome {
            Outcome::Answered { agreement, .. } => Some(agreement.top1),
            Outcome::Failed { .. } => None,
        }
    }
}

/// Compares the two answers at depth `k` (the shadow is asked for at least `k` labels).
pub fn agreement(live: &ItemAnswer, shadow: &ItemAnswer, k: usize) -> Agreement {
    let live_top = live.predictions.first().map(|p| p.label.as_str());
    let shadow_top = shadow.predictions.first().map(|p| p.label.as_str());
    let depth = k.min(live.predictions.len());
    let overlap = (depth > 0).then(|| {
        let theirs = &shadow.predictions[..depth.min(shadow.predictions.len())];
        let shared = live.predictions[..depth]
            .iter()
            .filter(|p| theirs.iter().any(|s| s.label == p.label))
            .count();
        shared as f64 / depth as f64
    });
    let live_winner_score = live_top.map(|winner| {
        shadow
            .predictions
            .iter()
            .find(|s| s.label == winner)
            .map(|s| s.score)
    });
    Agreement {
        shadow_top: shadow_top.map(str::to_owned),
        top1: live_top == shadow_top,
        overlap,
        live_winner_score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::LabelScore;

    fn answer(labels: &[(&str, f32)]) -> ItemAnswer {
        ItemAnswer {
            predictions: labels
                .iter()
                .map(|(l, s)| LabelScore {
                    label: (*l).to_owned(),
                    score: *s,
                })
                .collect(),
            rules_fired: vec![],
            agreement: 0,
            abstained: None,
            degraded: None,
            cascade: None,
            models: None,
        }
    }

    #[test]
    fn same_answers_agree_fully() {
        let a = answer(&[("a", 0.6), ("b", 0.3), ("c", 0.1)]);
        let g = agreement(&a, &a, 3);
        assert!(g.top1);
        assert_eq!(g.shadow_top.as_deref(), Some("a"));
        assert_eq!(g.overlap, Some(1.0));
        assert_eq!(g.live_winner_score, Some(Some(0.6)));
    }

    #[test]
    fn different_winner_partial_overlap_and_the_live_winner_score() {
        let live = answer(&[("a", 0.6), ("b", 0.3), ("c", 0.1)]);
        let shadow = answer(&[("b", 0.5), ("d", 0.3), ("a", 0.2)]);
        let g = agreement(&live, &shadow, 3);
        assert!(!g.top1);
        assert_eq!(g.overlap, Some(2.0 / 3.0));
        assert_eq!(g.live_winner_score, Some(Some(0.2)));
        // At depth 2 only "b" of {a, b} is among the shadow's {b, d}.
        assert_eq!(agreement(&live, &shadow, 2).overlap, Some(0.5));
    }

    #[test]
    fn depth_is_capped_by_the_live_answer() {
        let live = answer(&[("a", 0.9)]);
        let shadow = answer(&[("b", 0.5), ("a", 0.4)]);
        let g = agreement(&live, &shadow, 5);
        // Live asked for one label: the overlap at depth 1 is the top-1 agreement.
        assert_eq!(g.overlap, Some(0.0));
        assert_eq!(g.live_winner_score, Some(Some(0.4)));
    }

    #[test]
    fn the_live_winner_outside_the_shadow_answer_has_no_score() {
        let live = answer(&[("a", 0.9)]);
        let shadow = answer(&[("b", 0.5), ("c", 0.4)]);
        assert_eq!(agreement(&live, &shadow, 2).live_winner_score, Some(None));
    }

    #[test]
    fn abstentions() {
        let empty = answer(&[]);
        let some = answer(&[("a", 0.9)]);
        let both = agreement(&empty, &empty, 5);
        assert!(both.top1);
        assert_eq!(both.overlap, None);
        assert_eq!(both.live_winner_score, None);
        let shadow_abstains = agreement(&some, &empty, 5);
        assert!(!shadow_abstains.top1);
        assert_eq!(shadow_abstains.shadow_top, None);
        assert_eq!(shadow_abstains.overlap, Some(0.0));
        assert_eq!(shadow_abstains.live_winner_score, Some(None));
        let live_abstains = agreement(&empty, &some, 5);
        assert!(!live_abstains.top1);
        assert_eq!(live_abstains.overlap, None);
    }
}
