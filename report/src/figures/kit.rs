//! The figures' drawing kit: the [`Plot`] trait every figure implements,
//! [`render`] (SVG with hover markers, and PNG), the colours, the font, and
//! the pieces several figures draw (forest panels, error lines, legends,
//! axis spans).
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::data::{display_order, MetricRecord};
use crate::ReportError;

pub(super) type DResult<T> = Result<T, Box<dyn std::error::Error>>;

pub(super) const FONT: &str = "sans-serif";
pub(super) const BASE: RGBColor = RGBColor(31, 119, 180);
pub(super) const SECURE: RGBColor = RGBColor(44, 160, 44);
pub(super) const INSECURE: RGBColor = RGBColor(214, 39, 40);
pub(super) const BAND_FILL: RGBColor = RGBColor(226, 240, 217);
pub(super) const GREY: RGBColor = RGBColor(110, 110, 110);

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
pub(super) fn fonts() {
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

pub(super) fn marker_layer(markers: &[Marker]) -> String {
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

pub(super) fn model_color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// One labelled series of a panel: a line through `(x, value)`, a ± SE bar
/// and a dot at each point, and each dot's hover marker (`marker(i, at)`
/// for point `i` drawn at pixel `at`).
pub(super) fn error_line<'a, DB, X>(
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
pub(super) fn grouped_rows<T>(
    items: &[T],
    key: impl Fn(&T) -> (&str, &str, &str),
) -> Vec<Option<usize>> {
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

pub use crate::bounds::AXIS_LIMIT;

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
pub(super) fn forest<DB: DrawingBackend>(
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
pub(super) fn series_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
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

pub(super) fn sr_title(r: &MetricRecord) -> String {
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

pub(super) fn model_key(r: &MetricRecord) -> (&str, &str, &str) {
    (&r.family, &r.variant, &r.model)
}

/// Short foundation names for a category axis.
pub(super) fn short_foundation(f: &str) -> String {
    match f {
        "Harm/Care" => "Harm".into(),
        "Fairness/Reciprocity" => "Fairness".into(),
        "In-group/Loyalty" => "Loyalty".into(),
        "Authority/Respect" => "Authority".into(),
        "Purity/Sanctity" => "Purity".into(),
        other => other.into(),
    }
}
