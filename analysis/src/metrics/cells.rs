//! Cell tables: the valid ratings of every (persona, item) cell of one file.

/// The ratings of one sampling (or self) file grouped by cell.
///
/// Every row counts as one rating of its cell, repeated slots included (the
/// papers group by (persona, item) and never by run); `-1` rows make a cell
/// present but add no valid rating.
#[derive(Debug, Clone)]
pub struct CellTable {
    /// Sorted distinct persona ids of the file (`[0]` for a self file).
    pub personas: Vec<u32>,
    /// Which item ids (index = id - 1) occur in the file at all; as long as
    /// the largest item id of the file.
    pub items_present: Vec<bool>,
    /// Items per persona row of the cell arrays (the largest item id).
    width: usize,
    /// Per cell (persona index * width + item index): any row at all.
    present: Vec<bool>,
    /// Per cell: start of its valid ratings in `ratings`; one extra at the end.
    offsets: Vec<u32>,
    ratings: Vec<u8>,
}

impl CellTable {
    /// Groups `(persona, item id >= 1, rating)` rows into cells; a rating
    /// below 0 (-1) counts as no rating. The readers check ids and ratings
    /// against the instrument; an item id 0 is ignored here.
    pub fn from_rows<I>(rows: I) -> CellTable
    where
        I: Iterator<Item = (u32, u8, i8)> + Clone,
    {
        let rows = rows.filter(|r| r.1 >= 1);
        let width = rows.clone().map(|r| r.1 as usize).max().unwrap_or(0);
        let mut personas: Vec<u32> = rows.clone().map(|r| r.0).collect();
        personas.sort_unstable();
        personas.dedup();
        let cells = personas.len() * width;
        let dense = DenseIndex::new(&personas);
        let mut counts = vec![0u32; cells + 1];
        let mut present = vec![false; cells];
        let mut items_present = vec![false; width];
        for (p, q, r) in rows.clone() {
            let c = dense.get(p) * width + (q as usize - 1);
            present[c] = true;
            items_present[q as usize - 1] = true;
            if r >= 0 {
                counts[c + 1] += 1;
            }
        }
        for i in 1..=cells {
            counts[i] += counts[i - 1];
        }
        let offsets = counts;
        let mut fill: Vec<u32> = offsets[..cells].to_vec();
        let mut ratings = vec![0u8; offsets[cells] as usize];
        for (p, q, r) in rows {
            if r >= 0 {
                let c = dense.get(p) * width + (q as usize - 1);
                ratings[fill[c] as usize] = r as u8;
                fill[c] += 1;
            }
        }
        CellTable {
            personas,
            items_present,
            width,
            present,
            offsets,
            ratings,
        }
    }

    /// The valid ratings of persona index `pi` (into `personas`) and item
    /// `item` (empty for an item id beyond the file's largest).
    #[inline]
    pub fn ratings(&self, pi: usize, item: u8) -> &[u8] {
        if item as usize > self.width || item == 0 {
            return &[];
        }
        let c = pi * self.width + (item as usize - 1);
        &self.ratings[self.offsets[c] as usize..self.offsets[c + 1] as usize]
    }

    /// Whether the file has any row for the cell.
    pub fn is_present(&self, pi: usize, item: u8) -> bool {
        item >= 1
            && item as usize <= self.width
            && self.present[pi * self.width + (item as usize - 1)]
    }

    /// The item ids occurring in the file, ascending.
    pub fn items(&self) -> Vec<u8> {
        (1..=self.width)
            .filter(|&q| self.items_present[q - 1])
            .map(|q| q as u8)
            .collect()
    }

    /// The persona filter of METHOD.md: the persona ids whose cells of
    /// every item in `items` hold at least one valid rating.
    pub fn kept_personas(&self, items: &[u8]) -> Vec<u32> {
        (0..self.personas.len())
            .filter(|&pi| items.iter().all(|&q| !self.ratings(pi, q).is_empty()))
            .map(|pi| self.personas[pi])
            .collect()
    }

    /// Index of a persona id in `personas`.
    pub fn persona_index(&self, id: u32) -> Option<usize> {
        self.personas.binary_search(&id).ok()
    }
}

/// Persona id -> dense index, by direct table when ids are small.
enum DenseIndex<'a> {
    Table(Vec<u32>),
    Search(&'a [u32]),
}

impl<'a> DenseIndex<'a> {
    fn new(sorted: &'a [u32]) -> DenseIndex<'a> {
        match sorted.last() {
            Some(&max) if (max as usize) < 4 * sorted.len() + 4096 => {
                let mut t = vec![u32::MAX; max as usize + 1];
                for (i, &p) in sorted.iter().enumerate() {
                    t[p as usize] = i as u32;
                }
                DenseIndex::Table(t)
            }
            _ => DenseIndex::Search(sorted),
        }
    }

    #[inline]
    fn get(&self, id: u32) -> usize {
        match self {
            DenseIndex::Table(t) => t[id as usize] as usize,
            DenseIndex::Search(s) => s.binary_search(&id).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_rows_into_cells() {
        let rows = [
            (5u32, 1u8, 3i8),
            (2, 1, 4),
            (5, 1, -1),
            (5, 1, 3),
            (2, 2, -1),
            (5, 2, 0),
        ];
        let t = CellTable::from_rows(rows.iter().copied());
        assert_eq!(t.personas, vec![2, 5]);
        assert_eq!(t.items(), vec![1, 2]);
        assert_eq!(t.ratings(1, 1), &[3, 3]);
        assert_eq!(t.ratings(0, 1), &[4]);
        assert!(t.is_present(0, 2) && t.ratings(0, 2).is_empty());
        assert!(!t.is_present(0, 3));
        assert_eq!(t.kept_personas(&[1, 2]), vec![5]);
        assert_eq!(t.kept_personas(&[1]), vec![2, 5]);
        let big = CellTable::from_rows([(4_000_000_000u32, 3u8, 1i8), (7, 3, 2)].into_iter());
        assert_eq!(big.personas, vec![7, 4_000_000_000]);
        assert_eq!(big.ratings(1, 3), &[1]);
    }
}
