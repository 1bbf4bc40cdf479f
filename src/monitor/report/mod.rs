//! The report people look at: one self-contained HTML page (inline CSS, inline SVG plots, a few
//! lines of inline script to sort the members' table; no external asset, no CDN), the same for
//! `lastmile report` (from `lastmile zombies --json`) and the admin API's live report.
//!
//! Its plots (each an `<svg>` with a fixed `id`, for tests and for linking): members by compute
//! share against pivotal rate (`plot-influence`), the ensemble's accuracy without each member
//! (`plot-loo`, offline) or each member's agreement with the answer (live), the agreement between
//! the voters across groups (`plot-voters`) and between members (`plot-members`), the confidence
//! histogram against the reference (`plot-confidence`), the label buckets against the reference
//! (`plot-buckets`), and the drift statistics over the window (`plot-drift`, live). A plot whose
//! data the source does not have is left out, with a line saying why.

pub mod svg;

use std::fmt::Write as _;

use super::drift::{BucketShare, BINS};
use super::influence::MemberFigures;
use super::prune::Pruning;
use super::zombies::{Agreement, ZombieReport};
use svg::{esc, Bar, Point, BLUE, GREEN, GREY, ORANGE, RED};

/// One line over time: its name, its values, its threshold.
pub type Series = (String, Vec<f64>, f64);

/// Everything one page shows; built from an offline or a live report.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub title: String,
    /// Lines under the title: what, when, how many items.
    pub about: Vec<String>,
    /// Key figures, label and value.
    pub figures: Vec<(String, String)>,
    pub members: Vec<MemberFigures>,
    /// Offline: the ensemble's top-1 without each member (as `members`), and with all.
    pub without_top1: Option<(Vec<f64>, f64)>,
    /// Per member: `zombie`, `harmful`, `useful` (offline).
    pub verdicts: Vec<String>,
    pub voters: Option<Agreement>,
    pub member_agreement: Option<Agreement>,
    /// The confidence histogram (shares), and the reference's.
    pub confidence: Option<(Vec<f64>, Option<Vec<f64>>)>,
    pub buckets: Option<Vec<BucketShare>>,
    /// Drift over time: seconds, then (name, values, threshold) per statistic.
    pub drift: Option<(Vec<f64>, Vec<Series>)>,
    /// Why a section has no data (reference missing, nothing sampled yet, ...).
    pub notes: Vec<String>,
    pub pruning: Option<Pruning>,
}

fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if total > 0 {
                c as f64 / total as f64
            } else {
                0.0
            }
        })
        .collect()
}

impl From<&ZombieReport> for Page {
    fn from(r: &ZombieReport) -> Self {
        let mut figures = vec![
            ("top-1".to_owned(), format!("{:.2} %", 100.0 * r.top1)),
            (
                "abstained".to_owned(),
                format!("{:.2} %", 100.0 * r.abstention),
            ),
            ("members".to_owned(), r.members.len().to_string()),
            (
                "zombies".to_owned(),
                r.members
                    .iter()
                    .filter(|m| m.verdict == "zombie")
                    .count()
                    .to_string(),
            ),
        ];
        if let Some(p) = &r.pruning {
            figures.push((
                "pruned".to_owned(),
                format!(
                    "{} members, {:+.2} points, {:.2}× items/s",
                    p.removed.len(),
                    100.0 * (p.pruned.top1 - p.full.top1),
                    p.pruned.items_per_second / p.full.items_per_second.max(1e-9)
                ),
            ));
        }
        let mut notes = Vec::new();
        let (confidence, buckets) = match &r.drift {
            Some(d) => (
                Some((d.confidence.clone(), Some(d.reference_confidence.clone()))),
                Some(d.buckets.clone()),
            ),
            None => {
                notes.push(
                    "No [monitor] reference in the manifest: the confidence histogram is the \
                     data's alone."
                        .to_owned(),
                );
                (Some((shares(&r.confidence), None)), None)
            }
        };
        notes.push("Drift over time is the live report's (the admin API).".to_owned());
        Page {
            title: format!("{} {}: members and answers", r.ensemble, r.version),
            about: vec![
                format!("{} labelled items of {}", r.items, r.data),
                format!("manifest {} ({})", r.manifest, r.digest),
            ],
            figures,
            members: r.members.iter().map(|m| m.figures.clone()).collect(),
            without_top1: Some((r.members.iter().map(|m| m.without_top1).collect(), r.top1)),
            verdicts: r.members.iter().map(|m| m.verdict.clone()).collect(),
            voters: Some(r.voters.clone()),
            member_agreement: Some(r.member_agreement.clone()),
            confidence,
            buckets,
            drift: None,
            notes,
            pruning: r.pruning.clone(),
        }
    }
}

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1100px;color:#1d2329;padding:0 16px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #dde1e4;padding-bottom:4px}\
.about{color:#5b6670;margin:0}.figures{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}\
.figure{border:1px solid #dde1e4;border-radius:6px;padding:8px 12px}.figure b{display:block;font-size:18px}\
table{border-collapse:collapse;font-size:13px;width:100%}th,td{padding:3px 8px;border-bottom:1px solid #eef0f2;text-align:right}\
th{cursor:pointer;background:#f5f7f8;position:sticky;top:0}th:first-child,td:first-child,td.text{text-align:left}\
.plot{max-width:100%;height:auto}.plot text{font-size:11px;fill:#333}.plot .axis-title{font-size:12px}\
.note{color:#5b6670;font-style:italic}.zombie{color:#c23b22}.harmful{color:#d9822b}";

/// Sorts the members' table by a clicked column; marks the page ready once it has run.
const SCRIPT: &str = "(function(){\
var t=document.getElementById('members');\
if(t){var hs=t.tHead.rows[0].cells;for(var i=0;i<hs.length;i++){(function(c){hs[c].addEventListener('click',function(){\
var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows),up=t.dataset.sorted!==String(c);\
rows.sort(function(x,y){var a=x.cells[c].dataset.v||x.cells[c].textContent,d=y.cells[c].dataset.v||y.cells[c].textContent;\
var fa=parseFloat(a),fd=parseFloat(d);var r=(isNaN(fa)||isNaN(fd))?a.localeCompare(d):fa-fd;return up?r:-r;});\
rows.forEach(function(r){b.appendChild(r);});t.dataset.sorted=up?String(c):'';});})(i);}}\
document.body.dataset.ready='1';})();";

/// The page as one self-contained HTML document.
pub fn render(page: &Page) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head><body>",
        esc(&page.title)
    );
    let _ = write!(out, "<h1>{}</h1>", esc(&page.title));
    for line in &page.about {
        let _ = write!(out, "<p class=\"about\">{}</p>", esc(line));
    }
    out.push_str("<div class=\"figures\">");
    for (k, v) in &page.figures {
        let _ = write!(
            out,
            "<div class=\"figure\">{}<b>{}</b></div>",
            esc(k),
            esc(v)
        );
    }
    out.push_str("</div>");
    influence_section(&mut out, page);
    agreement_section(&mut out, page);
    answers_section(&mut out, page);
    members_table(&mut out, page);
    if let Some(p) = &page.pruning {
        pruning_section(&mut out, p);
    }
    for note in &page.notes {
        let _ = write!(out, "<p class=\"note\">{}</p>", esc(note));
    }
    let _ = write!(out, "<script>{SCRIPT}</script></body></html>");
    out
}

fn color_of(verdict: Option<&String>) -> &'static str {
    match verdict.map(String::as_str) {
        Some("zombie") => RED,
        Some("harmful") => ORANGE,
        _ => BLUE,
    }
}

fn influence_section(out: &mut String, page: &Page) {
    out.push_str("<h2>Members: compute against influence</h2>");
    if page.members.is_empty() {
        out.push_str("<p class=\"note\">No member figures yet.</p>");
        return;
    }
    out.push_str(
        "<p class=\"about\">One dot per member: its share of the ensemble's compute (x) and how \
         often leaving it out changes the answer (y). Bottom right: expensive and never decisive. \
         Red: zombies (never pivotal), orange: harmful (more accurate without).</p>",
    );
    let points: Vec<Point> = page
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| Point {
            x: m.compute_share,
            y: m.pivotal_rate,
            label: format!(
                "{}: compute {:.2}%, pivotal {:.2}%",
                m.name,
                100.0 * m.compute_share,
                100.0 * m.pivotal_rate
            ),
            color: color_of(page.verdicts.get(i)),
        })
        .collect();
    out.push_str(&svg::scatter(
        "plot-influence",
        &points,
        "share of compute",
        "pivotal rate",
    ));
    match &page.without_top1 {
        Some((without, full)) => {
            out.push_str(
                "<h2>Accuracy without each member</h2><p class=\"about\">The ensemble's top-1 \
                 on the data with each member left out (computed exactly, not estimated); the \
                 dashed line is the full ensemble's.</p>",
            );
            let mut rows: Vec<Bar> = page
                .members
                .iter()
                .zip(without)
                .enumerate()
                .map(|(i, (m, &v))| Bar {
                    label: m.name.clone(),
                    value: v,
                    color: color_of(page.verdicts.get(i)),
                })
                .collect();
            rows.sort_by(|a, b| a.value.total_cmp(&b.value));
            let lo = without.iter().copied().fold(*full, f64::min);
            let hi = without.iter().copied().fold(*full, f64::max);
            let pad = ((hi - lo) * 0.5).max(0.002);
            let range = ((lo - pad).max(0.0), (hi + pad).min(1.0));
            out.push_str(&svg::bars(
                "plot-loo",
                &rows,
                range,
                Some((*full, "full ensemble")),
            ));
        }
        None => {
            out.push_str(
                "<h2>Agreement with the answer</h2><p class=\"about\">Share of answered items \
                 whose first label is the member's own best label.</p>",
            );
            let mut rows: Vec<Bar> = page
                .members
                .iter()
                .map(|m| Bar {
                    label: m.name.clone(),
                    value: m.agreement,
                    color: BLUE,
                })
                .collect();
            rows.sort_by(|a, b| a.value.total_cmp(&b.value));
            out.push_str(&svg::bars("plot-loo", &rows, (0.0, 1.0), None));
        }
    }
}

fn agreement_section(out: &mut String, page: &Page) {
    if let Some(a) = page.voters.as_ref().filter(|a| !a.names.is_empty()) {
        out.push_str(
            "<h2>Agreement between the voters across groups</h2><p class=\"about\">Share of items \
             on which two voters (each group's models voting alone, each model outside a group \
             alone) give the same first label.</p>",
        );
        out.push_str(&svg::heatmap("plot-voters", &a.names, &a.groups, &a.rates));
    }
    if let Some(a) = page
        .member_agreement
        .as_ref()
        .filter(|a| !a.names.is_empty())
    {
        out.push_str(
            "<h2>Agreement between members</h2><p class=\"about\">Share of items on which two \
             members' own best labels are the same; lines separate the groups.</p>",
        );
        out.push_str(&svg::heatmap("plot-members", &a.names, &a.groups, &a.rates));
    }
}

fn answers_section(out: &mut String, page: &Page) {
    if let Some((window, reference)) = &page.confidence {
        out.push_str(
            "<h2>Confidence</h2><p class=\"about\">The first label's score of answered items, \
             against the reference's.</p>",
        );
        let bins: Vec<String> = (0..BINS)
            .map(|b| format!("{:.1}", b as f64 / BINS as f64))
            .collect();
        let mut series: Vec<(&str, &'static str, &[f64])> = vec![("answers", BLUE, window)];
        if let Some(r) = reference {
            series.insert(0, ("reference", GREY, r));
        }
        out.push_str(&svg::histogram("plot-confidence", &bins, &series));
    }
    if let Some(buckets) = &page.buckets {
        out.push_str(
            "<h2>Answers by label bucket</h2><p class=\"about\">Share of answers per tracked \
             bucket (label path prefix), against the reference's.</p>",
        );
        let names: Vec<String> = buckets.iter().map(|b| b.bucket.clone()).collect();
        let reference: Vec<f64> = buckets.iter().map(|b| b.reference).collect();
        let window: Vec<f64> = buckets.iter().map(|b| b.window).collect();
        out.push_str(&svg::histogram(
            "plot-buckets",
            &names,
            &[("reference", GREY, &reference), ("answers", BLUE, &window)],
        ));
    }
    if let Some((xs, series)) = &page.drift {
        out.push_str(
            "<h2>Drift over the window</h2><p class=\"about\">PSI and Jensen–Shannon distance of \
             the label buckets, PSI of the confidence histogram; dashed: the thresholds.</p>",
        );
        let colors = [BLUE, ORANGE, GREEN, RED];
        let series: Vec<(&str, &'static str, Vec<f64>, f64)> = series
            .iter()
            .zip(colors.iter().cycle())
            .map(|((name, values, t), &c)| (name.as_str(), c, values.clone(), *t))
            .collect();
        out.push_str(&svg::lines("plot-drift", xs, &series));
    }
}

fn members_table(out: &mut String, page: &Page) {
    if page.members.is_empty() {
        return;
    }
    out.push_str("<h2>Members</h2><p class=\"about\">Click a column to sort.</p><table id=\"members\"><thead><tr>");
    let mut heads = vec![
        "model",
        "kind",
        "group",
        "weight",
        "pivotal %",
        "agree %",
        "win share %",
        "compute %",
    ];
    if page.without_top1.is_some() {
        heads.extend(["top-1 without", "verdict"]);
    }
    for h in heads {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for (i, m) in page.members.iter().enumerate() {
        let pct = |v: f64| format!("<td data-v=\"{v}\">{:.2}</td>", 100.0 * v);
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td>{}{}{}{}",
            esc(&m.name),
            esc(&m.kind),
            esc(m.group.as_deref().unwrap_or("-")),
            m.weight,
            pct(m.pivotal_rate),
            pct(m.agreement),
            pct(m.winner_share),
            pct(m.compute_share)
        );
        if let Some((without, _)) = &page.without_top1 {
            let verdict = page.verdicts.get(i).map_or("", String::as_str);
            let _ = write!(
                out,
                "<td data-v=\"{}\">{:.4}</td><td class=\"text {}\">{}</td>",
                without[i],
                without[i],
                esc(verdict),
                esc(verdict)
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn pruning_section(out: &mut String, p: &Pruning) {
    let _ = write!(
        out,
        "<h2>Pruning proposal</h2><p>Remove {} members ({:.2} % of the compute) within {:.2} \
         points of top-1: {}.</p><table><thead><tr><th></th><th>top-1</th><th>top-5</th>\
         <th>macro-F1</th><th>items/s</th></tr></thead><tbody>",
        p.removed.len(),
        100.0 * p.compute_saved,
        100.0 * p.max_drop,
        esc(&p.removed.join(", "))
    );
    for (name, m) in [("full ensemble", &p.full), ("pruned ensemble", &p.pruned)] {
        let _ = write!(
            out,
            "<tr><td>{name}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.1}</td></tr>",
            m.top1, m.top5, m.macro_f1, m.items_per_second
        );
    }
    out.push_str("</tbody></table>");
    if let Some(path) = &p.manifest {
        let _ = write!(out, "<p class=\"about\">Pruned manifest: {}</p>", esc(path));
    }
}
