//! What is being served, said once: the ensemble's name, version, digest, fields, label count,
//! models (kind, size, content hash, labels, weight, group, provenance) and vote, with the manifest's defaults filled
//! in. Served by gRPC `GetEnsemble` as it is and by `GET /v1/ensemble` as JSON.

// The `[vote]` defaults are the combiner's own.
use crate::combine::{DEFAULT_AGREEMENT_K, DEFAULT_FLOOR, DEFAULT_RANK_K, DEFAULT_STRATEGY};
use crate::ensemble::Ensemble;
use crate::proto::lastmile::v1 as pb;
use crate::registry::provenance;

pub fn ensemble_info(e: &Ensemble) -> pb::EnsembleInfo {
    let vote = &e.vote;
    let rank_k = vote.rank_k.unwrap_or(DEFAULT_RANK_K);
    pb::EnsembleInfo {
        name: e.name.clone(),
        version: e.version.clone(),
        fields: e.fields.clone(),
        label_count: e.labels.len() as u32,
        models: e
            .models
            .iter()
            .map(|m| pb::ModelInfo {
                name: m.spec.name.clone(),
                kind: m.spec.kind.as_str().to_owned(),
                bytes: m.bytes,
                sha256: m.sha256.clone(),
                labels: m.label_ids.len() as u32,
                weight: m.spec.weight,
                group: m.spec.group.clone().unwrap_or_default(),
                fields: m.spec.fields.clone(),
                provenance: Some(provenance(&m.provenance)),
            })
            .collect(),
        vote: Some(pb::VoteInfo {
            strategy: vote
                .strategy
                .clone()
                .unwrap_or_else(|| DEFAULT_STRATEGY.into()),
            agreement_k: vote.agreement_k.unwrap_or(DEFAULT_AGREEMENT_K) as u32,
            rank_k: rank_k as u32,
            floor: vote.floor.unwrap_or(DEFAULT_FLOOR),
            groups: vote
                .groups
                .iter()
                .map(|(name, g)| pb::VoteGroup {
                    name: name.clone(),
                    strategy: g
                        .strategy
                        .clone()
                        .unwrap_or_else(|| DEFAULT_STRATEGY.into()),
                    weight: g.weight.unwrap_or(1.0),
                })
                .collect(),
            rules: e
                .rules
                .iter()
                .map(|r| pb::RuleInfo {
                    r#type: r.kind().to_owned(),
                    name: r.name().unwrap_or_default().to_owned(),
                })
                .collect(),
        }),
        bytes: e.bytes(),
        digest: e.digest.clone(),
        manifest_sha256: e.manifest_sha256.clone(),
    }
}
