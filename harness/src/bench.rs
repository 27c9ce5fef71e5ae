// SPDX-License-Identifier: GPL-2.0
//! Benchmark results: the guest's JSON lines and fio JSON, statistics, the Rust/C
//! table.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Repeated measurements of one figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub values: Vec<f64>,
}

impl Figure {
    pub fn median(&self) -> f64 {
        let mut v = self.values.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// (max - min) / median, as a fraction.
    pub fn spread(&self) -> f64 {
        let max = self.values.iter().cloned().fold(f64::MIN, f64::max);
        let min = self.values.iter().cloned().fold(f64::MAX, f64::min);
        (max - min) / self.median()
    }

    /// Whether a larger value is better (rates) or worse (times).
    pub fn higher_is_better(&self) -> bool {
        self.unit.ends_with("/s")
    }
}

/// Parses the benchmark program's JSON lines.
pub fn parse_lines(text: &str) -> Vec<Figure> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|j| {
            Some(Figure {
                name: j["figure"].as_str()?.to_string(),
                unit: j["unit"].as_str()?.to_string(),
                values: j["values"].as_array()?.iter().filter_map(|v| v.as_f64()).collect(),
            })
        })
        .collect()
}

/// Collects `fio-<job>-<rep>.json` files of a results folder into figures (MB/s).
pub fn fio_figures(dir: &Path) -> Vec<Figure> {
    let mut by_job: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_prefix("fio-").and_then(|s| s.strip_suffix(".json")) else { continue };
        let Some((job, _rep)) = stem.rsplit_once('-') else { continue };
        let dir_rw = if job.contains("-read-") { "read" } else { "write" };
        if let Some(bw) = crate::fio_bw(&e.path(), dir_rw) {
            by_job.entry(job.to_string()).or_default().push(bw);
        }
    }
    by_job
        .into_iter()
        .map(|(job, values)| {
            // `qd1-read-nsA-p2pmem@nvme`: p2pmem of provider `nvme`; RAM rows have none.
            let name = match job.split_once('@') {
                Some((head, prov)) => format!("[{prov}] 4 fio {}", head.replace('-', " ")),
                None => format!("4 fio {}", job.replace('-', " ")),
            };
            Figure { name, unit: "MB/s".into(), values }
        })
        .collect()
}

/// One row of the comparison.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub unit: String,
    pub c: Option<Figure>,
    pub rust: Option<Figure>,
}

impl Row {
    /// Rust's median over C's.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.rust.as_ref()?.median() / self.c.as_ref()?.median())
    }

    /// Rust's cost over C's: below 1 means Rust is better, whatever the unit.
    pub fn cost_ratio(&self) -> Option<f64> {
        let r = self.ratio()?;
        Some(if self.c.as_ref()?.higher_is_better() { 1.0 / r } else { r })
    }
}

/// Adds the values of `more` to the figures of the same name in `into`, keeping
/// `into`'s order; figures new to `into` go at the end.
pub fn merge(into: &mut Vec<Figure>, more: Vec<Figure>) {
    for f in more {
        match into.iter_mut().find(|x| x.name == f.name) {
            Some(x) => x.values.extend(f.values),
            None => into.push(f),
        }
    }
}

/// Pairs figures of the two implementations by name, in C's order.
pub fn rows(c: &[Figure], rust: &[Figure]) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for f in c.iter().chain(rust) {
        if out.iter().any(|r| r.name == f.name) {
            continue;
        }
        out.push(Row {
            name: f.name.clone(),
            unit: f.unit.clone(),
            c: c.iter().find(|x| x.name == f.name).cloned(),
            rust: rust.iter().find(|x| x.name == f.name).cloned(),
        });
    }
    out
}

fn cell(f: &Option<Figure>) -> String {
    match f {
        Some(f) => format!("{:.4} (±{:.0}%)", f.median(), 50.0 * f.spread()),
        None => "-".into(),
    }
}

/// The Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| figure | unit | C median (± half range) | Rust median (± half range) | Rust/C | Rust cost/C cost |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let f = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.unit,
            cell(&r.c),
            cell(&r.rust),
            f(r.ratio()),
            f(r.cost_ratio())
        ));
    }
    s
}

/// Raw numbers as JSON.
pub fn json(rows: &[Row]) -> serde_json::Value {
    let fig = |f: &Option<Figure>| match f {
        Some(f) => serde_json::json!({"values": f.values, "median": f.median(), "spread": f.spread()}),
        None => serde_json::Value::Null,
    };
    serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "figure": r.name, "unit": r.unit, "c": fig(&r.c), "rust": fig(&r.rust),
                    "rust_over_c": r.ratio(), "rust_cost_over_c_cost": r.cost_ratio(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_pools_values_by_name() {
        let fig = |n: &str, v: &[f64]| Figure { name: n.into(), unit: "ms".into(), values: v.to_vec() };
        let mut a = vec![fig("x", &[1.0]), fig("y", &[2.0])];
        merge(&mut a, vec![fig("y", &[3.0]), fig("z", &[4.0]), fig("x", &[5.0])]);
        assert_eq!(a, vec![fig("x", &[1.0, 5.0]), fig("y", &[2.0, 3.0]), fig("z", &[4.0])]);
    }

    #[test]
    fn stats() {
        let f = Figure { name: "x".into(), unit: "ms".into(), values: vec![3.0, 1.0, 2.0, 10.0] };
        assert_eq!(f.median(), 2.5);
        assert!((f.spread() - 9.0 / 2.5).abs() < 1e-12);
        assert!(!f.higher_is_better());
    }

    #[test]
    fn lines_and_rows() {
        let c = parse_lines("noise\n{\"figure\": \"a\", \"unit\": \"ops/s\", \"values\": [10, 10]}\n");
        let r = parse_lines(
            "{\"figure\": \"a\", \"unit\": \"ops/s\", \"values\": [20, 20]}\n{\"figure\": \"b\", \"unit\": \"ms\", \"values\": [1]}\n",
        );
        let rows = rows(&c, &r);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].ratio(), Some(2.0));
        assert_eq!(rows[0].cost_ratio(), Some(0.5));
        assert_eq!(rows[1].ratio(), None);
        let md = markdown(&rows);
        assert!(md.contains("| a | ops/s | 10.0000 (±0%) | 20.0000 (±0%) | 2.000 | 0.500 |"));
    }

    #[test]
    fn fio_rows_per_provider() {
        let dir = std::env::temp_dir().join(format!("fio-prov-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let json = "{\"jobs\":[{\"error\":0,\"read\":{\"io_bytes\":2000000,\"runtime\":1000}}]}";
        for f in ["fio-qd1-read-nsA-p2pmem@p2pmem_bar-0.json", "fio-qd1-read-nsA-p2pmem@p2pmem_bar-1.json", "fio-qd1-read-nsA-ram-0.json"] {
            fs::write(dir.join(f), json).unwrap();
        }
        let mut figs = fio_figures(&dir);
        figs.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(figs.len(), 2);
        assert_eq!(figs[0].name, "4 fio qd1 read nsA ram");
        assert_eq!(figs[1].name, "[p2pmem_bar] 4 fio qd1 read nsA p2pmem");
        assert_eq!(figs[1].values, vec![2.0, 2.0]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
