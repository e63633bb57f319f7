//! Reading the CSV files the conformance tests compare: rows as column ->
//! value maps, a file's header, a cell as a number.
#![allow(dead_code)] // each test binary uses its own part

use std::collections::HashMap;
use std::path::Path;

pub type Row = HashMap<String, String>;

pub fn read_csv(path: &Path) -> Vec<Row> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

pub fn header(path: &Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.headers().unwrap().iter().map(String::from).collect()
}

pub fn num(row: &Row, col: &str) -> f64 {
    row.get(col)
        .unwrap_or_else(|| panic!("column {col} missing in {row:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("column {col} of {row:?}: {e}"))
}
