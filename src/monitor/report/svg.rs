//! The report's plots, drawn as inline SVG: a scatter, horizontal bars, a heatmap, paired
//! histograms and lines over time. Each plot is one `<svg>` with an `id`, axes with a few ticks,
//! and a `<title>` on every mark (the browser shows it on hover). No script draws them.

use std::fmt::Write as _;

/// Text for XML (element content and attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Colours of the series and marks.
pub const BLUE: &str = "#3b6ea8";
pub const ORANGE: &str = "#d9822b";
pub const RED: &str = "#c23b22";
pub const GREY: &str = "#9aa4ad";
pub const GREEN: &str = "#3a8f5c";

const W: f64 = 720.0;
const MARGIN_L: f64 = 64.0;
const MARGIN_R: f64 = 24.0;
const MARGIN_T: f64 = 16.0;
const MARGIN_B: f64 = 44.0;

fn open(out: &mut String, id: &str, w: f64, h: f64, label: &str) {
    let _ = write!(
        out,
        r#"<svg id="{id}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#,
        esc(label)
    );
}

/// A "nice" upper end for an axis over [0, max].
fn nice(max: f64) -> f64 {
    if max.is_nan() || max <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= max {
            return m * p;
        }
    }
    10.0 * p
}

fn fmt_tick(v: f64, percent: bool) -> String {
    if percent {
        let p = 100.0 * v;
        if p >= 10.0 || p == 0.0 {
            format!("{p:.0}%")
        } else {
            format!("{p:.1}%")
        }
    } else if v.abs() >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A point of a scatter.
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub label: String,
    pub color: &'static str,
}

/// A scatter of `points` over [0, x max] × [0, y max], both axes as percentages.
pub fn scatter(id: &str, points: &[Point], x_title: &str, y_title: &str) -> String {
    let h = 380.0;
    let xmax = nice(points.iter().map(|p| p.x).fold(0.0, f64::max) * 1.05);
    let ymax = nice(points.iter().map(|p| p.y).fold(0.0, f64::max) * 1.05);
    let (pw, ph) = (W - MARGIN_L - MARGIN_R, h - MARGIN_T - MARGIN_B);
    let sx = |x: f64| MARGIN_L + pw * x / xmax;
    let sy = |y: f64| MARGIN_T + ph * (1.0 - y / ymax);
    let mut out = String::new();
    open(&mut out, id, W, h, &format!("{y_title} against {x_title}"));
    axes(&mut out, W, h, (xmax, true), (ymax, true), x_title, y_title);
    for p in points {
        let _ = write!(
            out,
            r##"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{}" fill-opacity="0.75" stroke="#fff"><title>{}</title></circle>"##,
            sx(p.x),
            sy(p.y),
            p.color,
            esc(&p.label)
        );
    }
    out.push_str("</svg>");
    out
}

/// Axes with ticks at fifths of each range; `(max, as percent)` per axis.
fn axes(out: &mut String, w: f64, h: f64, x: (f64, bool), y: (f64, bool), xt: &str, yt: &str) {
    let (x0, x1, y0, y1) = (MARGIN_L, w - MARGIN_R, MARGIN_T, h - MARGIN_B);
    let _ = write!(
        out,
        r##"<g class="axes" stroke="#444" fill="none"><line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}"/></g>"##
    );
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let (tx, ty) = (x0 + (x1 - x0) * f, y1 - (y1 - y0) * f);
        let _ = write!(
            out,
            r##"<line x1="{tx:.1}" y1="{y1}" x2="{tx:.1}" y2="{:.1}" stroke="#444"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"##,
            y1 + 4.0,
            y1 + 16.0,
            fmt_tick(x.0 * f, x.1)
        );
        let _ = write!(
            out,
            r##"<line x1="{x0}" y1="{ty:.1}" x2="{x1}" y2="{ty:.1}" stroke="#e3e6e8"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            x0 - 6.0,
            ty + 4.0,
            fmt_tick(y.0 * f, y.1)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis-title">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" class="axis-title">{}</text>"#,
        (x0 + x1) / 2.0,
        h - 6.0,
        esc(xt),
        (y0 + y1) / 2.0,
        esc(yt)
    );
}

/// One bar.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub color: &'static str,
}

/// Horizontal bars over [lo, hi] (values as fractions, shown as percentages), one row per
/// bar, with a marked reference value (e.g. the full ensemble's accuracy).
pub fn bars(id: &str, bars: &[Bar], (lo, hi): (f64, f64), mark: Option<(f64, &str)>) -> String {
    let row = 16.0;
    let left = 260.0;
    let h = MARGIN_T + MARGIN_B + row * bars.len().max(1) as f64;
    let pw = W - left - MARGIN_R;
    let span = (hi - lo).max(1e-9);
    let sx = |v: f64| left + pw * ((v - lo) / span).clamp(0.0, 1.0);
    let mut out = String::new();
    open(&mut out, id, W, h, "bars");
    for (i, b) in bars.iter().enumerate() {
        let y = MARGIN_T + row * i as f64;
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text><rect x="{left}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {:.2}%</title></rect>"#,
            left - 6.0,
            y + row * 0.75,
            esc(&b.label),
            y + 2.0,
            (sx(b.value) - left).max(0.5),
            row - 4.0,
            b.color,
            esc(&b.label),
            100.0 * b.value
        );
    }
    let base = h - MARGIN_B;
    for i in 0..=5 {
        let v = lo + span * i as f64 / 5.0;
        let x = sx(v);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{MARGIN_T}" x2="{x:.1}" y2="{base:.1}" stroke="#e3e6e8"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"##,
            base + 16.0,
            if span < 0.05 {
                format!("{:.2}%", 100.0 * v)
            } else {
                fmt_tick(v, true)
            }
        );
    }
    if let Some((v, what)) = mark {
        let x = sx(v);
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" y1="{MARGIN_T}" x2="{x:.1}" y2="{base:.1}" stroke="{RED}" stroke-dasharray="4 3"><title>{}: {:.2}%</title></line>"#,
            esc(what),
            100.0 * v
        );
    }
    out.push_str("</svg>");
    out
}

/// A heatmap of `rates` (fractions) between `names`, with lines between groups.
pub fn heatmap(
    id: &str,
    names: &[String],
    groups: &[Option<String>],
    rates: &[Vec<f64>],
) -> String {
    let n = names.len().max(1);
    let cell = (560.0 / n as f64).clamp(6.0, 48.0);
    let left = 240.0;
    let top = 16.0;
    let size = cell * n as f64;
    let (w, h) = (left + size + 80.0, top + size + 24.0);
    let mut out = String::new();
    open(&mut out, id, w, h, "agreement heatmap");
    for (i, row) in rates.iter().enumerate() {
        let y = top + cell * i as f64;
        if cell >= 9.0 {
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"#,
                left - 4.0,
                y + cell * 0.7,
                esc(&names[i])
            );
        }
        for (j, &r) in row.iter().enumerate() {
            let x = left + cell * j as f64;
            // White (0) to blue (1).
            let t = r.clamp(0.0, 1.0);
            let (cr, cg, cb) = (
                (255.0 - t * (255.0 - 59.0)) as u8,
                (255.0 - t * (255.0 - 110.0)) as u8,
                (255.0 - t * (255.0 - 168.0)) as u8,
            );
            let _ = write!(
                out,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgb({cr},{cg},{cb})"><title>{} / {}: {:.1}%</title></rect>"#,
                esc(&names[i]),
                esc(&names[j]),
                100.0 * r
            );
        }
    }
    for k in 1..groups.len() {
        if groups[k] != groups[k - 1] {
            let p = cell * k as f64;
            let _ = write!(
                out,
                r##"<line x1="{:.1}" y1="{top}" x2="{:.1}" y2="{:.1}" stroke="#222"/><line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#222"/>"##,
                left + p,
                left + p,
                top + size,
                top + p,
                left + size,
                top + p
            );
        }
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" class="tick">0% white, 100% blue</text>"#,
        left,
        top + size + 16.0
    );
    out.push_str("</svg>");
    out
}

/// Paired histograms: per bin, `series` side by side (name, colour, shares).
pub fn histogram(id: &str, bins: &[String], series: &[(&str, &'static str, &[f64])]) -> String {
    let h = 300.0;
    let ymax = nice(
        series
            .iter()
            .flat_map(|s| s.2.iter().copied())
            .fold(0.0, f64::max),
    );
    let (pw, ph) = (W - MARGIN_L - MARGIN_R, h - MARGIN_T - MARGIN_B);
    let slot = pw / bins.len().max(1) as f64;
    let bw = slot * 0.8 / series.len().max(1) as f64;
    let mut out = String::new();
    open(&mut out, id, W, h, "histogram");
    axes_y(&mut out, h, ymax);
    for (b, name) in bins.iter().enumerate() {
        let x0 = MARGIN_L + slot * b as f64 + slot * 0.1;
        for (k, (series, color, values)) in series.iter().enumerate() {
            let v = values.get(b).copied().unwrap_or(0.0);
            let bh = ph * v / ymax;
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{} {}: {:.2}%</title></rect>"#,
                x0 + bw * k as f64,
                MARGIN_T + ph - bh,
                bw,
                bh.max(0.0),
                esc(series),
                esc(name),
                100.0 * v
            );
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"#,
            MARGIN_L + slot * (b as f64 + 0.5),
            h - MARGIN_B + 16.0,
            esc(name)
        );
    }
    legend(&mut out, series.iter().map(|s| (s.0, s.1)));
    out.push_str("</svg>");
    out
}

/// The y axis alone (percentages), with grid lines.
fn axes_y(out: &mut String, h: f64, ymax: f64) {
    let (y0, y1) = (MARGIN_T, h - MARGIN_B);
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let y = y1 - (y1 - y0) * f;
        let _ = write!(
            out,
            r##"<line x1="{MARGIN_L}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e6e8"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            W - MARGIN_R,
            MARGIN_L - 6.0,
            y + 4.0,
            fmt_tick(ymax * f, true)
        );
    }
}

fn legend<'a>(out: &mut String, entries: impl Iterator<Item = (&'a str, &'a str)>) {
    for (i, (name, color)) in entries.enumerate() {
        let x = W - MARGIN_R - 180.0;
        let y = MARGIN_T + 4.0 + 16.0 * i as f64;
        let _ = write!(
            out,
            r#"<rect x="{x}" y="{y}" width="10" height="10" fill="{color}"/><text x="{}" y="{}" class="tick">{}</text>"#,
            x + 14.0,
            y + 9.0,
            esc(name)
        );
    }
}

/// Lines over time: `xs` seconds (relative), each series `(name, colour, values, threshold)`.
pub fn lines(id: &str, xs: &[f64], series: &[(&str, &'static str, Vec<f64>, f64)]) -> String {
    let h = 300.0;
    let ymax = nice(
        series
            .iter()
            .flat_map(|s| s.2.iter().copied().chain([s.3]))
            .fold(0.0, f64::max)
            * 1.1,
    );
    let (xmin, xmax) = (
        xs.first().copied().unwrap_or(0.0),
        xs.last().copied().unwrap_or(1.0),
    );
    let span = (xmax - xmin).max(1e-9);
    let (pw, ph) = (W - MARGIN_L - MARGIN_R, h - MARGIN_T - MARGIN_B);
    let sx = |x: f64| MARGIN_L + pw * (x - xmin) / span;
    let sy = |y: f64| MARGIN_T + ph * (1.0 - y / ymax);
    let mut out = String::new();
    open(&mut out, id, W, h, "drift over time");
    let _ = write!(
        out,
        r##"<g stroke="#444"><line x1="{MARGIN_L}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/></g>"##,
        MARGIN_T + ph,
        W - MARGIN_R,
        MARGIN_T + ph
    );
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let y = sy(ymax * f);
        let _ = write!(
            out,
            r##"<line x1="{MARGIN_L}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e6e8"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            W - MARGIN_R,
            MARGIN_L - 6.0,
            y + 4.0,
            fmt_tick(ymax * f, false)
        );
        // One point has no span: its tick says "now" once.
        if xs.len() > 1 || i == 0 {
            let x = MARGIN_L + pw * f;
            let _ = write!(
                out,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" class="tick">{:.0}s</text>"#,
                h - MARGIN_B + 16.0,
                (-(xmin + span * f)).max(0.0)
            );
        }
    }
    for (name, color, values, threshold) in series {
        let points: Vec<String> = xs
            .iter()
            .zip(values)
            .map(|(&x, &y)| format!("{:.1},{:.1}", sx(x), sy(y.min(ymax))))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"><title>{}</title></polyline><line x1="{MARGIN_L}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-dasharray="5 4"><title>{} threshold {}</title></line>"#,
            points.join(" "),
            esc(name),
            sy(*threshold),
            W - MARGIN_R,
            sy(*threshold),
            esc(name),
            threshold
        );
        if points.len() == 1 {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                sx(xs[0]),
                sy(values[0].min(ymax))
            );
        }
    }
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis-title">seconds before now</text>"#,
        MARGIN_L + pw / 2.0,
        h - 6.0
    );
    legend(&mut out, series.iter().map(|s| (s.0, s.1)));
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_axes_are_nice() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(
            (nice(0.0), nice(0.37), nice(0.9), nice(3.2)),
            (1.0, 0.5, 1.0, 5.0)
        );
        let s = scatter(
            "p",
            &[Point {
                x: 0.1,
                y: 0.2,
                label: "m<1>".into(),
                color: BLUE,
            }],
            "x",
            "y",
        );
        assert!(s.starts_with("<svg id=\"p\"") && s.ends_with("</svg>"));
        assert!(s.contains("m&lt;1&gt;") && !s.contains("m<1>"));
    }
}
