//! Text in the PNG figures, laid out glyph by glyph with ab_glyph and the
//! embedded DejaVu Sans. plotters' own bitmap text drops each glyph's left
//! side bearing (it draws a glyph's ink where its advance box begins), so
//! letters with a wide bearing sit too far left: "GPT-4o" read "GP T-4o".
//! [`TextFix`] wraps a backend and draws text with every glyph at its
//! origin plus its bearing, kerning applied; everything else goes to the
//! wrapped backend untouched. The vertical placement is plotters' (its
//! layout box and baseline), so charts keep their layout.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
    FontStyle,
};

/// The embedded DejaVu Sans face of a style.
fn face(style: FontStyle) -> Option<&'static FontRef<'static>> {
    static FACES: OnceLock<[Option<FontRef<'static>>; 3]> = OnceLock::new();
    let faces = FACES.get_or_init(|| {
        [
            FontRef::try_from_slice(dejavu::sans::regular()).ok(),
            FontRef::try_from_slice(dejavu::sans::bold()).ok(),
            FontRef::try_from_slice(dejavu::sans::oblique()).ok(),
        ]
    });
    let i = match style {
        FontStyle::Normal => 0,
        FontStyle::Bold => 1,
        FontStyle::Italic | FontStyle::Oblique => 2,
    };
    faces[i].as_ref()
}

/// Each glyph's pen position (x of its origin) along a line of `text` at
/// `size` pixels, kerning applied, and the line's advance width.
pub fn pen_positions(
    font: &FontRef<'_>,
    size: f32,
    text: &str,
) -> (Vec<(ab_glyph::GlyphId, f32)>, f32) {
    let scaled = font.as_scaled(PxScale::from(size));
    let mut x = 0f32;
    let mut prev = None;
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            x += scaled.kern(p, id);
        }
        out.push((id, x));
        x += scaled.h_advance(id);
        prev = Some(id);
    }
    (out, x)
}

/// Draws `text` with `draw(x, y, coverage)` for each inked pixel, relative to
/// the top left of plotters' layout box (baseline at `size / 2`, as
/// plotters places it).
pub fn raster(font: &FontRef<'_>, size: f32, text: &str, mut draw: impl FnMut(i32, i32, f32)) {
    let (glyphs, _) = pen_positions(font, size, text);
    for (id, x) in glyphs {
        let glyph = id.with_scale_and_position(PxScale::from(size), ab_glyph::point(x, size / 2.0));
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline
                .draw(|gx, gy, c| draw(b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32, c));
        }
    }
}

/// A backend whose text is drawn by [`raster`]; the rest is `B`'s.
pub struct TextFix<B>(pub B);

impl<B: DrawingBackend> DrawingBackend for TextFix<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.present()
    }
    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_pixel(point, color)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.fill_polygon(vert, style)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<TStyle: BackendTextStyle>(
        &self,
        text: &str,
        style: &TStyle,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        match face(style.style()) {
            Some(font) => {
                let size = style.size() as f32;
                let (_, width) = pen_positions(font, size, text);
                Ok((width.ceil() as u32, (style.size() / 1.24) as u32))
            }
            None => self.0.estimate_text_size(text, style),
        }
    }

    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let Some(font) = face(style.style()) else {
            return self.0.draw_text(text, style, pos);
        };
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let size = style.size() as f32;
        let (_, width) = pen_positions(font, size, text);
        let (width, height) = (width.ceil() as i32, (style.size() / 1.24) as i32);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let (w, h) = self.get_size();
        let mut result = Ok(());
        raster(font, size, text, |x, y, coverage| {
            if result.is_err() {
                return;
            }
            let (x, y) = trans.transform(x + dx, y + dy);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                result = self.0.draw_pixel(
                    (x, y),
                    BackendColor {
                        alpha: color.alpha * coverage.clamp(0.0, 1.0) as f64,
                        rgb: color.rgb,
                    },
                );
            }
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns holding ink of `text` rendered at `size` by `raster`.
    fn ink_columns(text: &str, size: f32) -> Vec<bool> {
        let font = face(FontStyle::Normal).unwrap();
        let mut cols = vec![false; (size as usize) * text.len() * 2];
        raster(font, size, text, |x, _, c| {
            if c > 0.3 && x >= 0 && (x as usize) < cols.len() {
                cols[x as usize] = true;
            }
        });
        cols
    }

    /// Blank columns strictly inside the inked extent.
    fn inner_gaps(cols: &[bool]) -> Vec<(usize, usize)> {
        let first = cols.iter().position(|c| *c).unwrap();
        let last = cols.iter().rposition(|c| *c).unwrap();
        let mut gaps = Vec::new();
        let mut start = None;
        for (x, c) in cols.iter().enumerate().take(last + 1).skip(first) {
            match (c, start) {
                (false, None) => start = Some(x),
                (true, Some(s)) => {
                    gaps.push((s, x - s));
                    start = None;
                }
                _ => {}
            }
        }
        gaps
    }

    #[test]
    fn glyphs_keep_their_bearings() {
        // Each glyph's ink begins at its pen position plus its left bearing.
        let font = face(FontStyle::Normal).unwrap();
        let size = 64.0;
        let (pens, _) = pen_positions(font, size, "GPT");
        let cols = ink_columns("GPT", size);
        for (id, x) in pens {
            let lsb = font.as_scaled(PxScale::from(size)).h_side_bearing(id);
            let want = (x + lsb).round() as i64;
            let got = (want - 2..=want + 2).any(|c| c >= 0 && cols[c as usize]);
            assert!(got, "no ink near the bearing of a glyph at {want}");
        }
        // "PT": the T's bar reaches over toward the P's bowl, so the widest
        // blank run between them is what the font's metrics leave (a couple
        // of pixels at 64 px), not the P's dropped bearing on top of it.
        let gaps = inner_gaps(&ink_columns("PT", size));
        let widest = gaps.iter().map(|g| g.1).max().unwrap_or(0);
        let p = font.glyph_id('P');
        let sc = font.as_scaled(PxScale::from(size));
        let bearing = sc.h_side_bearing(p);
        assert!(
            (widest as f32) < bearing,
            "a {widest} px gap inside \"PT\" (the P's bearing is {bearing} px): {gaps:?}"
        );
    }
}
