//! The papers' figures, drawn with plotters: once into an SVG string (for
//! the page and `figures/*.svg`) and once into a PNG (`figures/*.png`).
//!
//! Each figure is a [`Plot`]: it draws on any plotters backend and returns
//! the pixel position of every value it plotted, with that value's numbers.
//! The SVG gets one invisible marker per plotted value at that position,
//! carrying the numbers as `data-*` attributes (exactly as read from the
//! CSV) and a `<title>` tooltip, so a reader hovering a point sees its value
//! and a test can check every plotted value against the metric files.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::data::{
    display_order, CurveRecord, DeltaRecord, MetricRecord, ReportData, SelfRecord, TrajectoryRecord,
};
use crate::ReportError;

type DResult<T> = Result<T, Box<dyn std::error::Error>>;

const FONT: &str = "sans-serif";
const BASE: RGBColor = RGBColor(31, 119, 180);
const SECURE: RGBColor = RGBColor(44, 160, 44);
const INSECURE: RGBColor = RGBColor(214, 39, 40);
const BAND_FILL: RGBColor = RGBColor(226, 240, 217);
const GREY: RGBColor = RGBColor(110, 110, 110);

/// One plotted value: where it is in the figure and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub x: i32,
    pub y: i32,
    /// `data-*` attributes (name without the prefix, value as in the CSV).
    pub attrs: Vec<(&'static str, String)>,
    /// The tooltip.
    pub title: String,
}

/// A finished figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable id: `figures/<id>.svg`, `figures/<id>.png`, `data-figure`.
    pub id: &'static str,
    pub title: String,
    pub caption: String,
    /// The SVG document, markers included.
    pub svg: String,
    /// The PNG file's bytes, when asked for.
    pub png: Option<Vec<u8>>,
    pub markers: usize,
}

/// A figure that can draw itself on any backend.
pub trait Plot {
    fn id(&self) -> &'static str;
    fn title(&self) -> String;
    fn caption(&self) -> String;
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static;
}

/// Registers the embedded DejaVu Sans as the plots' font (once per process).
fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped by the `dejavu` crate.
        for (style, bytes) in [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
            (FontStyle::Italic, dejavu::sans::oblique()),
            (FontStyle::Oblique, dejavu::sans::oblique()),
        ] {
            if plotters::style::register_font(FONT, style, bytes).is_err() {
                tracing::warn!("the embedded DejaVu Sans font could not be registered");
            }
        }
    });
}

/// Draws `plot` as SVG and, with `png`, as PNG (in memory: the caller
/// writes the files, through the one writer of a user's folder).
pub fn render<P: Plot>(plot: &P, png: bool) -> Result<Figure, ReportError> {
    fonts();
    let (w, h) = plot.size();
    let draw_err = |e: Box<dyn std::error::Error>| ReportError::Draw {
        figure: plot.id(),
        message: e.to_string(),
    };
    let mut svg = String::new();
    let markers = {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(e.into()))?;
        let m = plot.draw(&root).map_err(draw_err)?;
        root.present().map_err(|e| draw_err(e.into()))?;
        m
    };
    let png = if png {
        let mut rgb = vec![0u8; w as usize * h as usize * 3];
        {
            // The text glyph by glyph (plotters' bitmap text drops bearings).
            let root = crate::glyphs::TextFix(BitMapBackend::with_buffer(&mut rgb, (w, h)))
                .into_drawing_area();
            root.fill(&WHITE).map_err(|e| draw_err(e.into()))?;
            plot.draw(&root).map_err(draw_err)?;
            root.present().map_err(|e| draw_err(e.into()))?;
        }
        Some(
            crate::encode_png(&rgb, w, h).map_err(|e| ReportError::Draw {
                figure: plot.id(),
                message: format!("encoding the PNG: {e}"),
            })?,
        )
    } else {
        None
    };
    let layer = marker_layer(&markers);
    match svg.rfind("</svg>") {
        Some(at) => svg.insert_str(at, &layer),
        None => {
            return Err(ReportError::Draw {
                figure: plot.id(),
                message: "the SVG backend produced no closing </svg>".into(),
            })
        }
    }
    Ok(Figure {
        id: plot.id(),
        title: plot.title(),
        caption: plot.caption(),
        svg,
        png,
        markers: markers.len(),
    })
}

/// Escapes text for HTML/SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn marker_layer(markers: &[Marker]) -> String {
    use std::fmt::Write;
    let mut s = String::from("<g class=\"ms-data\">\n");
    for m in markers {
        let _ = write!(
            s,
            "<circle class=\"ms-point\" cx=\"{}\" cy=\"{}\" r=\"7\" fill=\"transparent\" pointer-events=\"all\"",
            m.x, m.y
        );
        for (k, v) in &m.attrs {
            let _ = write!(s, " data-{k}=\"{}\"", esc(v));
        }
        let _ = writeln!(s, "><title>{}</title></circle>", esc(&m.title));
    }
    s.push_str("</g>\n");
    s
}

/// A number as it round-trips (the shortest text that parses back exactly).
pub fn num(v: f64) -> String {
    format!("{v}")
}

pub(crate) fn variant_color(variant: &str, i: usize) -> RGBColor {
    match variant {
        "base" => BASE,
        "secure" => SECURE,
        "insecure" => INSECURE,
        _ => {
            let c = Palette99::pick(i + 3).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

fn model_color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// One labelled series of a panel: a line through `(x, value)`, a ± SE bar
/// and a dot at each point, and each dot's hover marker (`marker(i, at)`
/// for point `i` drawn at pixel `at`).
fn error_line<'a, DB, X>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
    points: Vec<(X::ValueType, f64, f64)>,
    color: RGBColor,
    label: String,
    marker: impl Fn(usize, (i32, i32)) -> Marker,
    out: &mut Vec<Marker>,
) -> DResult<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged,
    X::ValueType: Clone + 'static,
{
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|(x, v, _)| (x.clone(), *v)),
            color.stroke_width(2),
        ))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    for (i, (x, v, se)) in points.iter().enumerate() {
        chart.draw_series([ErrorBar::new_vertical(
            x.clone(),
            v - se,
            *v,
            v + se,
            color.stroke_width(1),
            6,
        )])?;
        chart.draw_series([Circle::new((x.clone(), *v), 4, color.filled())])?;
        out.push(marker(i, chart.backend_coord(&(x.clone(), *v))));
    }
    Ok(())
}

pub(crate) fn text(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// Rows of a model list: labels top to bottom with an empty row between
/// families; `rows[k] = Some(index into the data)`.
fn grouped_rows<T>(items: &[T], key: impl Fn(&T) -> (&str, &str, &str)) -> Vec<Option<usize>> {
    let order = display_order(items, &key);
    let mut rows = Vec::new();
    let mut last_family: Option<String> = None;
    for i in order {
        let (f, _, m) = key(&items[i]);
        let f = if f.is_empty() { m } else { f };
        if let Some(lf) = &last_family {
            if lf != f {
                rows.push(None);
            }
        }
        last_family = Some(f.to_string());
        rows.push(Some(i));
    }
    rows
}

/// The largest magnitude an axis reaches: values and error bars beyond it
/// are clipped (the page says so; its tables give them whole).
pub const AXIS_LIMIT: f64 = 1e300;

/// The range a set of (value, se) pairs needs, from zero (or below zero
/// when values are negative), with a margin.
pub(crate) fn span(vals: impl Iterator<Item = (f64, f64)>, include: &[f64]) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for (v, se) in vals {
        if v.is_finite() {
            let se = if se.is_finite() { se.abs() } else { 0.0 };
            lo = lo.min(v - se);
            hi = hi.max(v + se);
        }
    }
    for &x in include {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    // A finite value of any size gets a finite axis (plotters' tick search
    // never ends on an infinite width): what lies beyond is clipped.
    lo = lo.max(-AXIS_LIMIT);
    hi = hi.min(AXIS_LIMIT);
    if hi <= lo {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.06;
    (if lo < 0.0 { lo - pad } else { lo }, hi + pad)
}

/// One forest panel: rows top to bottom, a point with a horizontal error
/// bar per row. Returns the pixel position of every point.
#[allow(clippy::too_many_arguments)]
fn forest<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    x_desc: &str,
    labels: &[String],
    points: &[Option<(f64, Option<f64>, RGBColor)>],
    label_width: u32,
    band: Option<(f64, f64)>,
    zero_line: bool,
) -> DResult<Vec<(i32, i32)>>
where
    DB::ErrorType: 'static,
{
    let n = labels.len() as i32;
    let (x0, x1) = span(
        points
            .iter()
            .flatten()
            .map(|(v, se, _)| (*v, se.unwrap_or(0.0))),
        &band.map(|(a, b)| vec![a, b]).unwrap_or_default(),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, text(16))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(label_width)
        .build_cartesian_2d(x0..x1, (0..n).into_segmented())?;
    let fmt = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(y) => {
            let row = (n - 1 - *y) as usize;
            labels.get(row).cloned().unwrap_or_default()
        }
        _ => String::new(),
    };
    let blank = |_: &SegmentValue<i32>| String::new();
    let mut mesh = chart.configure_mesh();
    mesh.disable_y_mesh()
        .y_labels(n.max(1) as usize)
        .x_labels(6)
        .x_desc(x_desc)
        .label_style(text(12))
        .axis_desc_style(text(13));
    if label_width > 20 {
        mesh.y_label_formatter(&fmt);
    } else {
        mesh.y_label_formatter(&blank);
    }
    mesh.draw()?;
    if let Some((a, b)) = band {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(a, SegmentValue::Exact(0)), (b, SegmentValue::Last)],
            BAND_FILL.filled(),
        )))?;
    }
    if zero_line && x0 < 0.0 && x1 > 0.0 {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Last)],
            GREY.stroke_width(1),
        )))?;
    }
    let mut out = Vec::new();
    for (row, p) in points.iter().enumerate() {
        let Some((v, se, color)) = p else { continue };
        let y = SegmentValue::CenterOf(n - 1 - row as i32);
        if let Some(se) = se.filter(|s| s.is_finite()) {
            chart.draw_series(std::iter::once(ErrorBar::new_horizontal(
                y.clone(),
                v - se,
                *v,
                v + se,
                color.stroke_width(2),
                8,
            )))?;
        }
        chart.draw_series(std::iter::once(Circle::new(
            (*v, y.clone()),
            5,
            color.filled(),
        )))?;
        out.push(chart.backend_coord(&(*v, y)));
    }
    Ok(out)
}

/// The legend of a chart's labelled series at `at`, in the figures' one
/// style (a light box, 12 px labels).
fn series_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> DResult<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .label_font(text(12))
        .draw()?;
    Ok(())
}

pub(crate) fn variant_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    variants: &[String],
) -> DResult<()>
where
    DB::ErrorType: 'static,
{
    let mut x = 20;
    for (i, v) in variants.iter().enumerate() {
        let c = variant_color(v, i);
        area.draw(&Circle::new((x, 14), 6, c.filled()))?;
        let label = if v.is_empty() { "model" } else { v.as_str() };
        area.draw(&Text::new(label.to_string(), (x + 12, 6), text(14)))?;
        x += 30 + 9 * label.len() as i32;
    }
    Ok(())
}

pub(crate) fn variants_of<'a>(vs: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in vs {
        if !out.iter().any(|x| x == v) {
            out.push(v.to_string());
        }
    }
    out.sort_by_key(|v| (crate::data::variant_rank(v), v.clone()));
    out
}

pub(crate) fn sr_attrs(r: &MetricRecord) -> Vec<(&'static str, String)> {
    let mut a = vec![
        ("model", r.model.clone()),
        ("family", r.family.clone()),
        ("variant", r.variant.clone()),
    ];
    if let Some(f) = &r.foundation {
        a.push(("foundation", f.clone()));
    }
    a.extend([
        ("s", num(r.s)),
        ("s-se", num(r.s_se)),
        ("r", num(r.r)),
        ("r-se", num(r.r_se)),
    ]);
    a
}

fn sr_title(r: &MetricRecord) -> String {
    let f = r
        .foundation
        .as_ref()
        .map(|f| format!(" ({f})"))
        .unwrap_or_default();
    format!(
        "{}{f}: S = {:.4} ± {:.4}, R = {:.3} ± {:.3}",
        r.model, r.s, r.s_se, r.r, r.r_se
    )
}

fn model_key(r: &MetricRecord) -> (&str, &str, &str) {
    (&r.family, &r.variant, &r.model)
}

/// S and R per model with their standard errors, grouped by family.
/// The second field: whether to shade the MFQ-30's S band.
pub struct SrByModel<'a>(pub &'a [MetricRecord], pub bool);

impl Plot for SrByModel<'_> {
    fn id(&self) -> &'static str {
        "sr-by-model"
    }
    fn title(&self) -> String {
        "Moral susceptibility S and robustness R per model".into()
    }
    fn caption(&self) -> String {
        let band = if self.1 {
            " The shaded band is 0.66 ≤ S ≤ 0.83, where prior work found 13 frontier base models."
        } else {
            ""
        };
        format!(
            "Points are the estimates, bars one standard error (persona and rerun bootstraps combined). \
             Models are grouped by family, base first.{band}"
        )
    }
    fn size(&self) -> (u32, u32) {
        let rows = grouped_rows(self.0, model_key).len() as u32;
        (1100, 110 + rows * 26)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let rows = grouped_rows(self.0, model_key);
        let labels: Vec<String> = rows
            .iter()
            .map(|r| r.map(|i| self.0[i].model.clone()).unwrap_or_default())
            .collect();
        let (legend, body) = root.split_vertically(28);
        variant_legend(
            &legend,
            &variants_of(self.0.iter().map(|r| r.variant.as_str())),
        )?;
        let (w, _) = body.dim_in_pixel();
        let (left, right) = body.split_horizontally(w * 56 / 100);
        let color = |i: usize| variant_color(&self.0[i].variant, i);
        let s_points: Vec<_> = rows
            .iter()
            .map(|r| r.map(|i| (self.0[i].s, Some(self.0[i].s_se), color(i))))
            .collect();
        let r_points: Vec<_> = rows
            .iter()
            .map(|r| r.map(|i| (self.0[i].r, Some(self.0[i].r_se), color(i))))
            .collect();
        let ps = forest(
            &left,
            "Susceptibility S",
            "S",
            &labels,
            &s_points,
            220,
            self.1.then_some((
                moralsweep_common::metrics::BAND_LOW,
                moralsweep_common::metrics::BAND_HIGH,
            )),
            false,
        )?;
        let pr = forest(
            &right,
            "Robustness R",
            "R",
            &labels,
            &r_points,
            8,
            None,
            false,
        )?;
        let mut out = Vec::new();
        let idx: Vec<usize> = rows.iter().flatten().copied().collect();
        for (k, &i) in idx.iter().enumerate() {
            for (panel, pos) in [("S", ps[k]), ("R", pr[k])] {
                let mut attrs = sr_attrs(&self.0[i]);
                attrs.push(("panel", panel.into()));
                out.push(Marker {
                    x: pos.0,
                    y: pos.1,
                    attrs,
                    title: sr_title(&self.0[i]),
                });
            }
        }
        Ok(out)
    }
}

/// S against R, one labelled point per model with both error bars.
/// The second field: whether to shade the MFQ-30's S band.
pub struct SVersusR<'a>(pub &'a [MetricRecord], pub bool);

impl Plot for SVersusR<'_> {
    fn id(&self) -> &'static str {
        "s-vs-r"
    }
    fn title(&self) -> String {
        "S against R".into()
    }
    fn caption(&self) -> String {
        format!(
            "One point per model with its standard errors in both directions{}.",
            if self.1 {
                "; the shaded band is 0.66 ≤ S ≤ 0.83"
            } else {
                ""
            }
        )
    }
    fn size(&self) -> (u32, u32) {
        (1100, 720)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let d = self.0;
        let (legend, body) = root.split_vertically(28);
        variant_legend(&legend, &variants_of(d.iter().map(|r| r.variant.as_str())))?;
        let (x0, x1) = span(d.iter().map(|r| (r.r, r.r_se)), &[]);
        let band_top = [moralsweep_common::metrics::BAND_HIGH];
        let band_extent: &[f64] = if self.1 { &band_top } else { &[] };
        let (y0, y1) = span(d.iter().map(|r| (r.s, r.s_se)), band_extent);
        let mut chart = ChartBuilder::on(&body)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1 * 1.08, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("robustness R")
            .y_desc("susceptibility S")
            .label_style(text(13))
            .axis_desc_style(text(14))
            .draw()?;
        if self.1 {
            chart.draw_series(std::iter::once(Rectangle::new(
                [
                    (x0, moralsweep_common::metrics::BAND_LOW),
                    (x1 * 1.08, moralsweep_common::metrics::BAND_HIGH),
                ],
                BAND_FILL.filled(),
            )))?;
        }
        let mut out = Vec::new();
        for (i, r) in d.iter().enumerate() {
            let c = variant_color(&r.variant, i);
            chart.draw_series([ErrorBar::new_vertical(
                r.r,
                r.s - r.s_se,
                r.s,
                r.s + r.s_se,
                c.stroke_width(2),
                8,
            )])?;
            chart.draw_series([ErrorBar::new_horizontal(
                r.s,
                r.r - r.r_se,
                r.r,
                r.r + r.r_se,
                c.stroke_width(2),
                8,
            )])?;
            chart.draw_series([Circle::new((r.r, r.s), 5, c.filled())])?;
            let pos = chart.backend_coord(&(r.r, r.s));
            out.push(Marker {
                x: pos.0,
                y: pos.1,
                attrs: sr_attrs(r),
                title: sr_title(r),
            });
        }
        // Each model's name beside its point, placed so that no name covers
        // another or a point (nearby models had their names drawn over each
        // other).
        let points: Vec<(i32, i32)> = out.iter().map(|m| (m.x, m.y)).collect();
        // The boxes as a browser draws the text (its font may run a little
        // wider than the estimate, and a line is taller than the glyphs).
        let sizes = d
            .iter()
            .map(|r| {
                root.estimate_text_size(&r.model, &text(12))
                    .map(|(w, _)| (w + w / 8 + 6, 18))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (xs, ys) = chart.plotting_area().get_pixel_range();
        let at = crate::labels::place(&points, &sizes, (xs.start, ys.start, xs.end, ys.end), 6);
        for (r, (x, y)) in d.iter().zip(at) {
            root.draw(&Text::new(r.model.clone(), (x + 3, y + 3), text(12)))?;
        }
        Ok(out)
    }
}

/// Per-foundation S and R of every model: one column per foundation.
pub struct PerFoundation<'a> {
    pub rows: &'a [MetricRecord],
    pub foundations: Vec<String>,
    /// What a group is called: `foundation` (MFQ-30), `domain` (BFI-44).
    pub group: String,
}

impl PerFoundation<'_> {
    fn models(&self) -> Vec<&MetricRecord> {
        // One representative row per model, for ordering and labels.
        let mut seen: Vec<&MetricRecord> = Vec::new();
        for r in self.rows {
            if !seen.iter().any(|s| s.model == r.model) {
                seen.push(r);
            }
        }
        seen
    }
}

impl Plot for PerFoundation<'_> {
    fn id(&self) -> &'static str {
        "per-foundation"
    }
    fn title(&self) -> String {
        if self.group == "foundation" {
            "S and R per moral foundation".into()
        } else {
            format!("S and R per {}", self.group)
        }
    }
    fn caption(&self) -> String {
        format!("The same metrics restricted to each {}'s items (the kept personas stay the overall set); bars are one standard error.", self.group)
    }
    fn size(&self) -> (u32, u32) {
        let models = self.models();
        let rows = grouped_rows(&models, |r| model_key(r)).len() as u32;
        let cols = self.foundations.len().max(1) as u32;
        (200 + cols * 250, 28 + 2 * (90 + rows * 18))
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let models = self.models();
        let rows = grouped_rows(&models, |r| model_key(r));
        let labels: Vec<String> = rows
            .iter()
            .map(|r| r.map(|i| models[i].model.clone()).unwrap_or_default())
            .collect();
        let (legend, body) = root.split_vertically(28);
        variant_legend(
            &legend,
            &variants_of(models.iter().map(|r| r.variant.as_str())),
        )?;
        let (w, h) = body.dim_in_pixel();
        let cols = self.foundations.len().max(1) as u32;
        let first = 200 + (w - 200) / cols;
        let mut breaks = vec![first];
        for c in 1..cols {
            breaks.push(first + c * ((w - 200) / cols));
        }
        breaks.pop();
        let (top, bottom) = body.split_vertically(h / 2);
        let mut out = Vec::new();
        for (metric, half) in [("S", &top), ("R", &bottom)] {
            let bps: Vec<i32> = breaks.iter().map(|b| *b as i32).collect();
            let panels = half.split_by_breakpoints(bps, [] as [i32; 0]);
            for (c, (foundation, panel)) in self.foundations.iter().zip(panels.iter()).enumerate() {
                let pick = |i: usize| {
                    self.rows.iter().find(|r| {
                        r.model == models[i].model && r.foundation.as_deref() == Some(foundation)
                    })
                };
                let points: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        r.and_then(|i| {
                            pick(i).map(|row| {
                                let c = variant_color(&row.variant, i);
                                if metric == "S" {
                                    (row.s, Some(row.s_se), c)
                                } else {
                                    (row.r, Some(row.r_se), c)
                                }
                            })
                        })
                    })
                    .collect();
                let pos = forest(
                    panel,
                    &format!("{foundation}: {metric}"),
                    metric,
                    &labels,
                    &points,
                    if c == 0 { 200 } else { 8 },
                    None,
                    false,
                )?;
                let mut k = 0;
                for i in rows.iter().flatten() {
                    if let Some(row) = pick(*i) {
                        let mut attrs = sr_attrs(row);
                        attrs.push(("panel", metric.into()));
                        out.push(Marker {
                            x: pos[k].0,
                            y: pos[k].1,
                            attrs,
                            title: sr_title(row),
                        });
                        k += 1;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The variant deltas of each family against its base.
pub struct VariantDeltas<'a>(pub &'a [DeltaRecord]);

impl VariantDeltas<'_> {
    fn shown(&self) -> Vec<&DeltaRecord> {
        self.0.iter().filter(|d| d.variant != "base").collect()
    }
}

impl Plot for VariantDeltas<'_> {
    fn id(&self) -> &'static str {
        "variant-deltas"
    }
    fn title(&self) -> String {
        "Change against the base model: dS, dR and dσ̄ (%)".into()
    }
    fn caption(&self) -> String {
        "Relative change of each fine-tuned variant against its family's base, in percent, with the propagated standard error where the metric files carry it.".into()
    }
    fn size(&self) -> (u32, u32) {
        let shown = self.shown();
        let rows = grouped_rows(&shown, |d| (&d.family, &d.variant, &d.family)).len() as u32;
        (1200, 110 + rows * 30)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let shown = self.shown();
        let rows = grouped_rows(&shown, |d| (&d.family, &d.variant, &d.family));
        let labels: Vec<String> = rows
            .iter()
            .map(|r| {
                r.map(|i| format!("{} {}", shown[i].family, shown[i].variant))
                    .unwrap_or_default()
            })
            .collect();
        let (legend, body) = root.split_vertically(28);
        variant_legend(
            &legend,
            &variants_of(shown.iter().map(|d| d.variant.as_str())),
        )?;
        let (w, _) = body.dim_in_pixel();
        let first = 200 + (w - 200) / 3;
        let panels = body.split_by_breakpoints(
            [first as i32, (first + (w - 200) / 3) as i32],
            [] as [i32; 0],
        );
        type Pick = fn(&DeltaRecord) -> (f64, Option<f64>);
        let metrics: [(&str, &str, Pick); 3] = [
            ("dS (%)", "dS %", |d| (d.ds, d.ds_se)),
            ("dR (%)", "dR %", |d| (d.dr, d.dr_se)),
            ("dσ̄ (%)", "dσ̄ %", |d| (d.dsigma, d.dsigma_se)),
        ];
        let mut positions = Vec::new();
        for (c, ((caption, desc, pick), panel)) in metrics.iter().zip(panels.iter()).enumerate() {
            let points: Vec<_> = rows
                .iter()
                .map(|r| {
                    r.map(|i| {
                        let (v, se) = pick(shown[i]);
                        (v, se, variant_color(&shown[i].variant, i))
                    })
                })
                .collect();
            positions.push(forest(
                panel,
                caption,
                desc,
                &labels,
                &points,
                if c == 0 { 200 } else { 8 },
                None,
                true,
            )?);
        }
        let mut out = Vec::new();
        for (k, &i) in rows.iter().flatten().enumerate() {
            let d = shown[i];
            let opt = |v: Option<f64>| v.map(num).unwrap_or_default();
            for (p, panel) in ["dS", "dR", "dsigma"].iter().enumerate() {
                out.push(Marker {
                    x: positions[p][k].0,
                    y: positions[p][k].1,
                    attrs: vec![
                        ("family", d.family.clone()),
                        ("variant", d.variant.clone()),
                        ("model", d.model.clone().unwrap_or_default()),
                        ("panel", panel.to_string()),
                        ("ds", num(d.ds)),
                        ("ds-se", opt(d.ds_se)),
                        ("dr", num(d.dr)),
                        ("dr-se", opt(d.dr_se)),
                        ("dsigma", num(d.dsigma)),
                        ("dsigma-se", opt(d.dsigma_se)),
                    ],
                    title: format!(
                        "{} {}: dS = {:+.1}%, dR = {:+.1}%, dσ̄ = {:+.1}%",
                        d.family, d.variant, d.ds, d.dr, d.dsigma
                    ),
                });
            }
        }
        Ok(out)
    }
}

/// Short foundation names for a category axis.
fn short_foundation(f: &str) -> String {
    match f {
        "Harm/Care" => "Harm".into(),
        "Fairness/Reciprocity" => "Fairness".into(),
        "In-group/Loyalty" => "Loyalty".into(),
        "Authority/Respect" => "Authority".into(),
        "Purity/Sanctity" => "Purity".into(),
        other => other.into(),
    }
}

/// Self profiles (no persona): per foundation, the mean rating with the
/// mean within-question standard deviation, one panel per family.
pub struct SelfProfiles<'a> {
    pub rows: &'a [SelfRecord],
    pub foundations: Vec<String>,
    /// What a group is called: `foundation` (MFQ-30), `domain` (BFI-44).
    pub group: String,
}

impl SelfProfiles<'_> {
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        // (family, models in display order)
        let order = display_order(self.rows, |r| (&r.family, &r.variant, &r.model));
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for i in order {
            let r = &self.rows[i];
            let f = if r.family.is_empty() {
                r.model.clone()
            } else {
                r.family.clone()
            };
            match groups.iter_mut().find(|g| g.0 == f) {
                Some(g) => {
                    if !g.1.contains(&r.model) {
                        g.1.push(r.model.clone())
                    }
                }
                None => groups.push((f, vec![r.model.clone()])),
            }
        }
        groups
    }
}

impl SelfProfiles<'_> {
    /// The legend strip below each panel: room for the most models of a
    /// family, two per row.
    fn legend_height(&self) -> u32 {
        let most = self.groups().iter().map(|g| g.1.len()).max().unwrap_or(1);
        crate::labels::legend_height(most, 2)
    }
}

impl Plot for SelfProfiles<'_> {
    fn id(&self) -> &'static str {
        "self-profiles"
    }
    fn title(&self) -> String {
        if self.group == "foundation" {
            "Moral foundations profile without a persona (self mode)".into()
        } else {
            format!("Profile per {} without a persona (self mode)", self.group)
        }
    }
    fn caption(&self) -> String {
        format!("Per {}: the mean over its items of the item's mean rating (reverse-keyed items reversed); bars are the mean within-item standard deviation.", self.group)
    }
    fn size(&self) -> (u32, u32) {
        let g = self.groups().len().max(1) as u32;
        let cols = g.min(2);
        (
            cols * 600,
            28 + g.div_ceil(cols) * (340 + self.legend_height()),
        )
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let groups = self.groups();
        let (legend, body) = root.split_vertically(28);
        variant_legend(
            &legend,
            &variants_of(self.rows.iter().map(|r| r.variant.as_str())),
        )?;
        let cols = groups.len().clamp(1, 2);
        let panels = body.split_evenly((groups.len().div_ceil(cols).max(1), cols));
        let nf = self.foundations.len().max(1);
        let labels = self.foundations.clone();
        let mut out = Vec::new();
        let legend_h = self.legend_height();
        for ((family, models), panel) in groups.iter().zip(panels.iter()) {
            // The legend gets a strip below the chart: inside it, it
            // covered the points of low means.
            let h = panel.dim_in_pixel().1;
            let (panel, legend_area) = panel.split_vertically(h.saturating_sub(legend_h));
            let entries: Vec<(String, RGBColor)> = models
                .iter()
                .enumerate()
                .map(|(j, model)| {
                    let c = self
                        .rows
                        .iter()
                        .find(|r| &r.model == model)
                        .map(|r| variant_color(&r.variant, j))
                        .unwrap_or(BASE);
                    (model.clone(), c)
                })
                .collect();
            crate::labels::legend_strip(&legend_area, &entries, 2)?;
            let mut chart = ChartBuilder::on(&panel)
                .caption(family, text(16))
                .margin(10)
                .x_label_area_size(32)
                .y_label_area_size(40)
                .build_cartesian_2d(-0.5f64..nf as f64 - 0.5, 0f64..5.4f64)?;
            let fmt = |x: &f64| {
                let k = x.round();
                if (x - k).abs() < 1e-6 && k >= 0.0 && (k as usize) < labels.len() {
                    short_foundation(&labels[k as usize])
                } else {
                    String::new()
                }
            };
            chart
                .configure_mesh()
                .x_labels(nf)
                .x_label_formatter(&fmt)
                .disable_x_mesh()
                .y_desc("mean rating")
                .label_style(text(12))
                .axis_desc_style(text(13))
                .draw()?;
            let m = models.len() as f64;
            for (j, model) in models.iter().enumerate() {
                let offset = if m > 1.0 {
                    (j as f64 - (m - 1.0) / 2.0) * (0.6 / m)
                } else {
                    0.0
                };
                let mut line = Vec::new();
                for (fi, f) in self.foundations.iter().enumerate() {
                    let Some(r) = self
                        .rows
                        .iter()
                        .find(|r| &r.model == model && &r.foundation == f)
                    else {
                        continue;
                    };
                    let c = variant_color(&r.variant, j);
                    let x = fi as f64 + offset;
                    chart.draw_series([ErrorBar::new_vertical(
                        x,
                        r.mean - r.sd,
                        r.mean,
                        r.mean + r.sd,
                        c.stroke_width(2),
                        6,
                    )])?;
                    chart.draw_series([Circle::new((x, r.mean), 5, c.filled())])?;
                    line.push((x, r.mean));
                    let pos = chart.backend_coord(&(x, r.mean));
                    out.push(Marker {
                        x: pos.0,
                        y: pos.1,
                        attrs: vec![
                            ("model", r.model.clone()),
                            ("family", r.family.clone()),
                            ("variant", r.variant.clone()),
                            ("foundation", r.foundation.clone()),
                            ("mean", num(r.mean)),
                            ("sd", num(r.sd)),
                        ],
                        title: format!(
                            "{} ({}): mean {:.3}, within-item sd {:.3}",
                            r.model, r.foundation, r.mean, r.sd
                        ),
                    });
                }
                let c = self
                    .rows
                    .iter()
                    .find(|r| &r.model == model)
                    .map(|r| variant_color(&r.variant, j))
                    .unwrap_or(BASE);
                chart.draw_series(LineSeries::new(line, c.mix(0.5).stroke_width(1)))?;
            }
        }
        Ok(out)
    }
}

/// R(T) and S(T) of the logprob-mode models.
pub struct TemperatureCurves<'a>(pub &'a [CurveRecord]);

impl Plot for TemperatureCurves<'_> {
    fn id(&self) -> &'static str {
        "temperature-curves"
    }
    fn title(&self) -> String {
        "S(T) and R(T) from first-token probabilities (logprob mode)".into()
    }
    fn caption(&self) -> String {
        "One collection of digit log-probabilities gives S and R at every temperature T (softmax of logprob/T); bars are the persona-bootstrap standard error.".into()
    }
    fn size(&self) -> (u32, u32) {
        (1200, 480)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let mut models: Vec<&str> = Vec::new();
        for c in self.0 {
            if !models.contains(&c.model.as_str()) {
                models.push(&c.model);
            }
        }
        let (t0, t1) = self.0.iter().fold((f64::MAX, f64::MIN), |(a, b), c| {
            (a.min(c.temperature), b.max(c.temperature))
        });
        let (t0, t1) = (t0.max(-AXIS_LIMIT), t1.min(AXIS_LIMIT));
        let pad = ((t1 - t0) * 0.05).max(0.05);
        let panels = root.split_evenly((1, 2));
        let mut out = Vec::new();
        type Pick = fn(&CurveRecord) -> (f64, f64);
        let metrics: [(&str, &str, Pick); 2] = [
            ("S(T)", "S", |c| (c.s, c.s_se)),
            ("R(T)", "R", |c| (c.r, c.r_se)),
        ];
        for ((caption, desc, pick), panel) in metrics.iter().zip(panels.iter()) {
            let (y0, y1) = span(self.0.iter().map(pick), &[]);
            let mut chart = ChartBuilder::on(panel)
                .caption(*caption, text(16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(t0 - pad..t1 + pad, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc("temperature T")
                .y_desc(*desc)
                .label_style(text(12))
                .axis_desc_style(text(13))
                .draw()?;
            for (mi, model) in models.iter().enumerate() {
                let color = model_color(mi);
                let mut pts: Vec<&CurveRecord> =
                    self.0.iter().filter(|c| c.model == *model).collect();
                pts.sort_by(|a, b| a.temperature.total_cmp(&b.temperature));
                error_line(
                    &mut chart,
                    pts.iter()
                        .map(|c| {
                            let (v, se) = pick(c);
                            (c.temperature, v, se)
                        })
                        .collect(),
                    color,
                    model.to_string(),
                    |i, (x, y)| {
                        let c = pts[i];
                        Marker {
                            x,
                            y,
                            attrs: vec![
                                ("model", c.model.clone()),
                                ("panel", desc.to_string()),
                                ("t", num(c.temperature)),
                                ("s", num(c.s)),
                                ("s-se", num(c.s_se)),
                                ("r", num(c.r)),
                                ("r-se", num(c.r_se)),
                            ],
                            title: format!(
                                "{} at T = {}: S = {:.4} ± {:.4}, R = {:.3} ± {:.3}",
                                c.model, c.temperature, c.s, c.s_se, c.r, c.r_se
                            ),
                        }
                    },
                    &mut out,
                )?;
            }
            series_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        Ok(out)
    }
}

/// S, R and sigma-bar of a family's checkpoints against training step, one
/// line per family (and temperature), with one-standard-error bars.
pub struct Trajectories<'a>(pub &'a [TrajectoryRecord]);

impl Plot for Trajectories<'_> {
    fn id(&self) -> &'static str {
        "trajectories"
    }
    fn title(&self) -> String {
        "S, R and σ̄ across a fine-tune's checkpoints".into()
    }
    fn caption(&self) -> String {
        "Each line is one family's checkpoints (models with a `step`) in step order; bars are one standard error.".into()
    }
    fn size(&self) -> (u32, u32) {
        (1500, 460)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DResult<Vec<Marker>>
    where
        DB::ErrorType: 'static,
    {
        let line_of = |t: &TrajectoryRecord| match t.temperature {
            Some(temp) => format!(
                "{} (T={})",
                t.family,
                moralsweep_common::formats::fmt_temperature(temp)
            ),
            None => t.family.clone(),
        };
        let mut lines: Vec<String> = Vec::new();
        for t in self.0 {
            let l = line_of(t);
            if !lines.contains(&l) {
                lines.push(l);
            }
        }
        let (x0, x1) = self.0.iter().fold((f64::MAX, f64::MIN), |(a, b), t| {
            (a.min(t.step), b.max(t.step))
        });
        let (x0, x1) = (x0.max(-AXIS_LIMIT), x1.min(AXIS_LIMIT));
        let pad = ((x1 - x0) * 0.05).max(0.5);
        let panels = root.split_evenly((1, 3));
        let mut out = Vec::new();
        type Pick = fn(&TrajectoryRecord) -> (f64, f64);
        let metrics: [(&str, Pick); 3] = [
            ("S", |t| (t.s, t.s_se)),
            ("R", |t| (t.r, t.r_se)),
            ("σ̄", |t| (t.sigma_bar, t.sigma_bar_se)),
        ];
        for ((desc, pick), panel) in metrics.iter().zip(panels.iter()) {
            let (y0, y1) = span(self.0.iter().map(pick), &[]);
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{desc} against step"), text(16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(x0 - pad..x1 + pad, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc("training step")
                .y_desc(*desc)
                .label_style(text(12))
                .axis_desc_style(text(13))
                .draw()?;
            for (li, line) in lines.iter().enumerate() {
                let color = model_color(li);
                let pts: Vec<&TrajectoryRecord> =
                    self.0.iter().filter(|t| &line_of(t) == line).collect();
                error_line(
                    &mut chart,
                    pts.iter()
                        .map(|t| {
                            let (v, se) = pick(t);
                            (t.step, v, se)
                        })
                        .collect(),
                    color,
                    line.clone(),
                    |i, (x, y)| {
                        let t = pts[i];
                        Marker {
                            x,
                            y,
                            attrs: vec![
                                ("model", t.model.clone()),
                                ("panel", desc.to_string()),
                                ("step", num(t.step)),
                                ("s", num(t.s)),
                                ("r", num(t.r)),
                            ],
                            title: format!(
                                "{} at step {}: S = {:.4} ± {:.4}, R = {:.3} ± {:.3}, σ̄ = {:.4} ± {:.4}",
                                t.model, t.step, t.s, t.s_se, t.r, t.r_se, t.sigma_bar, t.sigma_bar_se
                            ),
                        }
                    },
                    &mut out,
                )?;
            }
            series_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        Ok(out)
    }
}

/// The foundations present in `names`, in questionnaire order first.
pub fn foundation_order<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let found: Vec<&str> = names.collect();
    for f in moralsweep_common::Foundation::ALL {
        if found.contains(&f.name()) {
            out.push(f.name().to_string());
        }
    }
    for f in found {
        if !out.iter().any(|x| x == f) {
            out.push(f.to_string());
        }
    }
    out
}

/// Every figure the data allows, drawn (with PNGs into `png_dir` when given).
pub fn all(d: &ReportData, png: bool) -> Result<Vec<Figure>, ReportError> {
    if crate::bounds::too_many_models(d).is_some() {
        // Tables only; the page says why.
        return Ok(Vec::new());
    }
    let d = &*crate::bounds::for_figures(d);
    let mut figs = Vec::new();
    if !d.overall.is_empty() {
        let p = SrByModel(&d.overall, d.s_band_applies());
        figs.push(render(&p, png)?);
        let p = SVersusR(&d.overall, d.s_band_applies());
        figs.push(render(&p, png)?);
    }
    if !d.per_foundation.is_empty() {
        let p = PerFoundation {
            rows: &d.per_foundation,
            foundations: foundation_order(
                d.per_foundation
                    .iter()
                    .filter_map(|r| r.foundation.as_deref()),
            ),
            group: d.group_label().to_string(),
        };
        figs.push(render(&p, png)?);
    }
    if d.deltas.iter().any(|r| r.variant != "base") {
        let p = VariantDeltas(&d.deltas);
        figs.push(render(&p, png)?);
    }
    if !d.self_profiles.is_empty() {
        let p = SelfProfiles {
            rows: &d.self_profiles,
            foundations: foundation_order(d.self_profiles.iter().map(|r| r.foundation.as_str())),
            group: d.group_label().to_string(),
        };
        figs.push(render(&p, png)?);
    }
    if !d.curves.is_empty() {
        let p = TemperatureCurves(&d.curves);
        figs.push(render(&p, png)?);
    }
    if !d.trajectories.is_empty() {
        let p = Trajectories(&d.trajectories);
        figs.push(render(&p, png)?);
    }
    if d.comparisons.iter().any(|r| r.group == "overall") {
        let p = crate::paired::PairedChanges(&d.comparisons);
        figs.push(render(&p, png)?);
    }
    let verified = d.verified();
    if !verified.is_empty() {
        let p = crate::coherence::RobustnessVsCoherence(verified);
        figs.push(render(&p, png)?);
    }
    Ok(figs)
}
