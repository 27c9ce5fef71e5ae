// SPDX-License-Identifier: GPL-2.0
//! Kconfig fragments: parse them and check that every requested symbol took effect.
//!
//! `scripts/kconfig/merge_config.sh` only warns when a symbol is dropped (an unmet
//! dependency, a typo, a symbol that no longer exists); a test kernel silently missing
//! KASAN or P2PDMA would make every later result meaningless, so the harness fails.

use std::collections::BTreeMap;

/// A symbol's value as written in a fragment or a `.config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `=y`, `=m`, a number or a string: compared as written.
    Set(String),
    /// `# CONFIG_FOO is not set` (or `=n`).
    Unset,
}

/// Parses fragment or `.config` text into `symbol -> value` (without the `CONFIG_` prefix).
pub fn parse(text: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# CONFIG_") {
            if let Some(sym) = rest.strip_suffix(" is not set") {
                out.insert(sym.to_string(), Value::Unset);
            }
        } else if let Some(rest) = line.strip_prefix("CONFIG_") {
            if let Some((sym, val)) = rest.split_once('=') {
                let v = if val == "n" { Value::Unset } else { Value::Set(val.to_string()) };
                out.insert(sym.to_string(), v);
            }
        }
    }
    out
}

/// Returns one line per requested symbol whose value in `config` differs.
pub fn mismatches(requested: &BTreeMap<String, Value>, config: &BTreeMap<String, Value>) -> Vec<String> {
    let mut bad = Vec::new();
    for (sym, want) in requested {
        let have = config.get(sym).cloned().unwrap_or(Value::Unset);
        if &have != want {
            let show = |v: &Value| match v {
                Value::Set(s) => format!("CONFIG_{sym}={s}"),
                Value::Unset => format!("CONFIG_{sym} unset"),
            };
            bad.push(format!("requested {}, got {}", show(want), show(&have)));
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        let m = parse("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=n\nCONFIG_D=\"x y\"\n# comment\nCONFIG_E=30\n");
        assert_eq!(m["A"], Value::Set("y".into()));
        assert_eq!(m["B"], Value::Unset);
        assert_eq!(m["C"], Value::Unset);
        assert_eq!(m["D"], Value::Set("\"x y\"".into()));
        assert_eq!(m["E"], Value::Set("30".into()));
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn reports_dropped_and_changed_symbols() {
        let req = parse("CONFIG_KASAN=y\nCONFIG_RUST=y\n# CONFIG_SLUB_TINY is not set\nCONFIG_HZ=1000\n");
        let cfg = parse("CONFIG_RUST=y\nCONFIG_SLUB_TINY=y\nCONFIG_HZ=250\n");
        let bad = mismatches(&req, &cfg);
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad.iter().any(|l| l.contains("CONFIG_KASAN=y") && l.contains("unset")));
        assert!(bad.iter().any(|l| l.contains("CONFIG_SLUB_TINY unset, got CONFIG_SLUB_TINY=y")));
        assert!(bad.iter().any(|l| l.contains("CONFIG_HZ=250")));
    }

    #[test]
    fn unset_matches_absent() {
        let req = parse("# CONFIG_NVME_MULTIPATH is not set\n");
        assert!(mismatches(&req, &parse("")).is_empty());
    }
}
