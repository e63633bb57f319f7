//! Where the figures put their text so that it covers neither data nor
//! other text: point labels placed around their points (S against R), and
//! legends drawn in a strip of their own outside the plotting area (self
//! profiles).

use plotters::coord::Shift;
use plotters::prelude::*;

/// A box in pixels: left, top, right, bottom.
pub type PxBox = (i32, i32, i32, i32);

#[cfg(test)]
fn overlaps(a: PxBox, b: PxBox) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

/// Area `a` and `b` share.
fn shared(a: PxBox, b: PxBox) -> i64 {
    let w = (a.2.min(b.2) - a.0.max(b.0)).max(0) as i64;
    let h = (a.3.min(b.3) - a.1.max(b.1)).max(0) as i64;
    w * h
}

/// Top-left corners for labels of sizes `sizes` (w, h) beside `points`,
/// inside `bounds`: each label takes the first place around its point (right
/// above, right below, left above, left below, above, below, then the same
/// further out) that overlaps no label placed before it and no point (a
/// `radius` disc around each); where no place is free, the one overlapping
/// least. Labels are placed in the points' order.
pub fn place(
    points: &[(i32, i32)],
    sizes: &[(u32, u32)],
    bounds: PxBox,
    radius: i32,
) -> Vec<(i32, i32)> {
    let dots: Vec<PxBox> = points
        .iter()
        .map(|&(x, y)| (x - radius, y - radius, x + radius, y + radius))
        .collect();
    let mut placed: Vec<PxBox> = Vec::with_capacity(points.len());
    let mut out = Vec::with_capacity(points.len());
    for (&(x, y), &(w, h)) in points.iter().zip(sizes) {
        let (w, h) = (w as i32, h as i32);
        let mut candidates = Vec::new();
        for step in [0, 14, 30, 50] {
            let gap = radius + 3 + step;
            candidates.extend([
                (x + gap, y - h - gap / 2),
                (x + gap, y + gap / 2),
                (x - gap - w, y - h - gap / 2),
                (x - gap - w, y + gap / 2),
                (x - w / 2, y - h - gap),
                (x - w / 2, y + gap),
            ]);
        }
        let clamp = |(l, t): (i32, i32)| {
            (
                l.clamp(bounds.0, (bounds.2 - w).max(bounds.0)),
                t.clamp(bounds.1, (bounds.3 - h).max(bounds.1)),
            )
        };
        let cost = |(l, t): (i32, i32)| -> i64 {
            let b = (l, t, l + w, t + h);
            let text: i64 = placed.iter().map(|p| shared(*p, b)).sum();
            let data: i64 = dots.iter().map(|d| shared(*d, b)).sum();
            text + data
        };
        let best = candidates
            .iter()
            .map(|c| clamp(*c))
            .find(|c| cost(*c) == 0)
            .unwrap_or_else(|| {
                candidates
                    .iter()
                    .map(|c| clamp(*c))
                    .min_by_key(|c| cost(*c))
                    .unwrap_or((x, y))
            });
        placed.push((best.0, best.1, best.0 + w, best.1 + h));
        out.push(best);
    }
    out
}

/// Height of a legend strip of `n` entries in `columns` columns.
pub fn legend_height(n: usize, columns: usize) -> u32 {
    (n.div_ceil(columns.max(1)) as u32) * 18 + 8
}

/// A legend in an area of its own: a dot of each entry's colour and its
/// name, `columns` entries per row.
pub fn legend_strip<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor)],
    columns: usize,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    let col_w = (w as usize / columns.max(1)) as i32;
    for (k, (name, c)) in entries.iter().enumerate() {
        let (row, col) = (k / columns.max(1), k % columns.max(1));
        let x = 48 + col as i32 * col_w;
        let y = 4 + row as i32 * 18;
        area.draw(&Circle::new((x, y + 7), 4, c.filled()))?;
        area.draw(&Text::new(name.clone(), (x + 10, y), super::kit::text(12)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_nearby_points_do_not_overlap() {
        // Five points within a few pixels of each other, labels 90 x 14.
        let points = [(300, 200), (306, 204), (310, 198), (296, 206), (303, 210)];
        let sizes = [(90, 14); 5];
        let at = place(&points, &sizes, (0, 0, 800, 600), 6);
        for i in 0..at.len() {
            let a = (at[i].0, at[i].1, at[i].0 + 90, at[i].1 + 14);
            for j in 0..i {
                let b = (at[j].0, at[j].1, at[j].0 + 90, at[j].1 + 14);
                assert!(!overlaps(a, b), "labels {i} and {j} overlap: {at:?}");
            }
            for (k, p) in points.iter().enumerate() {
                let dot = (p.0 - 6, p.1 - 6, p.0 + 6, p.1 + 6);
                assert!(!overlaps(a, dot), "label {i} covers point {k}: {at:?}");
            }
        }
    }

    #[test]
    fn labels_stay_inside_the_bounds() {
        let at = place(&[(795, 5)], &[(90, 14)], (0, 0, 800, 600), 6);
        let (l, t) = at[0];
        assert!(l >= 0 && l + 90 <= 800 && t >= 0 && t + 14 <= 600, "{at:?}");
    }
}
