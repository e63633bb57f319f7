//! Reading the CSV files tests compare (metric files, rating files): rows
//! as column -> value maps, a file's header, a cell as a number. Every
//! failure panics naming the file or the column, as a test wants.

use std::collections::HashMap;
use std::path::Path;

/// One row: column name -> field.
pub type Row = HashMap<String, String>;

/// Every row of the CSV file at `path`.
pub fn read_csv(path: &Path) -> Vec<Row> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The header of the CSV file at `path`.
pub fn header(path: &Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.headers().unwrap().iter().map(String::from).collect()
}

/// Column `col` of `row` as a number.
pub fn num(row: &Row, col: &str) -> f64 {
    row.get(col)
        .unwrap_or_else(|| panic!("column {col} missing in {row:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("column {col} of {row:?}: {e}"))
}
