//! Value-level mutations of JSON and TOML documents: parse, replace/remove/duplicate keys and
//! values with hostile ones (huge or negative numbers, wrong types, deep nesting, long strings
//! and arrays, keys known from the seeds), re-serialize.

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{Map, Number, Value};

use crate::mutate::MAX_INPUT;

/// Every object key of `v` (recursively), for inserting known keys elsewhere.
pub fn collect_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if !out.contains(k) {
                    out.push(k.clone());
                }
                collect_keys(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_keys(x, out)),
        _ => {}
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Object(m) => m.values().map(count_nodes).sum(),
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The path (child indices) of the `n`-th node of `v` in pre-order, if there is one.
fn nth_path(v: &Value, n: &mut usize, path: &mut Vec<usize>) -> bool {
    if *n == 0 {
        return true;
    }
    *n -= 1;
    let children: Box<dyn Iterator<Item = &Value>> = match v {
        Value::Object(m) => Box::new(m.values()),
        Value::Array(a) => Box::new(a.iter()),
        _ => return false,
    };
    for (i, c) in children.enumerate() {
        path.push(i);
        if nth_path(c, n, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn node_at<'a>(v: &'a mut Value, path: &[usize]) -> &'a mut Value {
    let Some((&i, rest)) = path.split_first() else {
        return v;
    };
    match v {
        Value::Object(m) => match m.values_mut().nth(i) {
            Some(c) => node_at(c, rest),
            None => unreachable!("paths come from nth_path"),
        },
        Value::Array(a) => node_at(&mut a[i], rest),
        _ => unreachable!("paths come from nth_path"),
    }
}

/// A random node of `v` (mutable).
fn pick<'a>(rng: &mut StdRng, v: &'a mut Value) -> &'a mut Value {
    let mut n = rng.random_range(0..count_nodes(v));
    let mut path = Vec::new();
    nth_path(v, &mut n, &mut path);
    node_at(v, &path)
}

/// A hostile JSON value: extremes, wrong types, deep nesting, long strings and arrays.
pub fn hostile(rng: &mut StdRng, near: &Value) -> Value {
    let big = |rng: &mut StdRng| {
        if rng.random_bool(0.8) {
            rng.random_range(1..64)
        } else {
            rng.random_range(64..20_000)
        }
    };
    match rng.random_range(0..16) {
        0 => Value::from(u64::MAX),
        1 => Value::from(i64::MIN),
        2 => Value::from(-1),
        3 => Value::from(0),
        4 => Value::from(1u64 << 63),
        5 => Value::from(u32::MAX),
        6 => Number::from_f64(1e308).map_or(Value::Null, Value::Number),
        7 => Number::from_f64(-0.5).map_or(Value::Null, Value::Number),
        8 => Value::String("x".repeat(big(rng))),
        9 => Value::Array(vec![near.clone(); big(rng).min(2_000)]),
        10 => {
            let mut v = near.clone();
            for _ in 0..rng.random_range(1..200) {
                v = Value::Array(vec![v]);
            }
            v
        }
        11 => Value::Null,
        12 => Value::Bool(rng.random()),
        13 => Value::Object(Map::new()),
        14 => Value::String(String::new()),
        _ => match near {
            Value::Number(n) => Value::String(n.to_string()),
            Value::String(s) => s.parse::<f64>().map_or(Value::from(7), Value::from),
            other => Value::String(other.to_string()),
        },
    }
}

/// Applies 1 to 3 value-level mutations to `v`; `keys` are names to insert.
pub fn mutate_value(rng: &mut StdRng, v: &mut Value, keys: &[String]) {
    for _ in 0..rng.random_range(1..=3) {
        let node = pick(rng, v);
        match rng.random_range(0..6) {
            0..=1 => {
                let h = hostile(rng, node);
                *node = h;
            }
            2 => match node {
                Value::Object(m) if !m.is_empty() => {
                    let k = m.keys().nth(rng.random_range(0..m.len())).cloned();
                    k.map(|k| m.remove(&k));
                }
                Value::Array(a) if !a.is_empty() => {
                    a.remove(rng.random_range(0..a.len()));
                }
                _ => *node = Value::Null,
            },
            3 => match node {
                Value::Object(m) if !keys.is_empty() => {
                    let k = keys[rng.random_range(0..keys.len())].clone();
                    let h = hostile(rng, m.get(&k).unwrap_or(&Value::Null));
                    m.insert(k, h);
                }
                Value::Array(a) if !a.is_empty() => {
                    let x = a[rng.random_range(0..a.len())].clone();
                    let times = if rng.random_bool(0.8) { 1 } else { 500 };
                    a.extend(std::iter::repeat_n(x, times));
                }
                _ => *node = hostile(rng, &Value::Null),
            },
            4 => {
                // Another node's value here (structure from elsewhere in the document).
                let copy = pick(rng, &mut v.clone()).clone();
                *pick(rng, v) = copy;
            }
            _ => {
                if let Value::Number(n) = node {
                    let t = crate::mutate::TEXT_EXTREMES;
                    let s = t[rng.random_range(0..t.len())];
                    *node =
                        serde_json::from_str(s).unwrap_or_else(|_| Value::String(n.to_string()));
                }
            }
        }
    }
}

/// Mutates JSON text at the value level; `None` when `data` is not JSON.
pub fn mutate_json(rng: &mut StdRng, data: &[u8], keys: &[String]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(data).ok()?;
    mutate_value(rng, &mut v, keys);
    let mut out = match rng.random_bool(0.5) {
        true => serde_json::to_vec(&v).ok()?,
        false => serde_json::to_vec_pretty(&v).ok()?,
    };
    if rng.random_bool(0.1) {
        duplicate_first_key(&mut out);
    }
    (out.len() <= MAX_INPUT).then_some(out)
}

/// Repeats the first `"key": value` pair of a compact object (duplicate keys).
fn duplicate_first_key(out: &mut Vec<u8>) {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(out) else {
        return;
    };
    if let Some((k, v)) = m.iter().next() {
        let pair = format!("{}:{},", Value::String(k.clone()), v);
        out.splice(1..1, pair.into_bytes());
    }
}

/// Mutates TOML text at the value level (through JSON); `None` when `data` is not TOML or the
/// mutated value has no TOML form (a null, say).
pub fn mutate_toml(rng: &mut StdRng, data: &[u8], keys: &[String]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(data).ok()?;
    let table: toml::Table = toml::from_str(text).ok()?;
    let mut v = serde_json::to_value(&table).ok()?;
    mutate_value(rng, &mut v, keys);
    let t: toml::Table = serde_json::from_value(v).ok()?;
    let out = toml::to_string(&t).ok()?;
    (out.len() <= MAX_INPUT).then(|| out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn json_mutations_parse_back_and_differ() {
        let mut rng = StdRng::seed_from_u64(3);
        let seed = br#"{"a": 1, "b": [1, 2, {"c": "x"}]}"#;
        let mut keys = Vec::new();
        collect_keys(&serde_json::from_slice(seed).unwrap(), &mut keys);
        assert_eq!(keys, ["a", "b", "c"]);
        let original: Value = serde_json::from_slice(seed).unwrap();
        let mut differ = 0;
        for _ in 0..100 {
            let out = mutate_json(&mut rng, seed, &keys).unwrap();
            // Nesting past serde_json's recursion limit (128) is meant not to parse back.
            if let Ok(v) = serde_json::from_slice::<Value>(&out) {
                differ += usize::from(v != original);
            }
        }
        assert!(differ > 60, "{differ}");
    }

    #[test]
    fn toml_mutations_round_trip() {
        let mut rng = StdRng::seed_from_u64(4);
        let seed = b"a = 1\n[[s]]\nk = \"v\"\nn = 2\n";
        let ok = (0..100)
            .filter_map(|_| mutate_toml(&mut rng, seed, &["k".into()]))
            .count();
        assert!(ok > 30, "{ok}");
    }
}
