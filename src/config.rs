//! What a configuration's `validate()` returns: the key within its section, the problem and the
//! fix. The scenario adds the file, the line and the section, giving the one-line error
//! `FILE:LINE: `SECTION.KEY`: PROBLEM; fix: FIX`.

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    /// Serde's error at `path` (dotted, "" at the top) as a key and a fix. The name of an
    /// unknown or missing key, which serde gives only in its message, is appended to the path.
    pub fn from_serde(path: &str, msg: &str) -> ConfigError {
        let join = |key: &str, name: &str| {
            if key.is_empty() {
                name.to_string()
            } else {
                format!("{key}.{name}")
            }
        };
        let named = |prefix: &str| msg.strip_prefix(prefix).and_then(|r| r.split('`').next());
        let mut key = path.to_string();
        if let Some(name) = named("unknown field `") {
            if !key.ends_with(name) {
                key = join(&key, name);
            }
        }
        if let Some(name) = named("missing field `") {
            key = join(&key, name);
        }
        let fix = if msg.starts_with("unknown field") {
            "remove the key or correct its spelling".to_string()
        } else if msg.starts_with("missing field") {
            format!("add `{key} = ...`; this setting has no safe default")
        } else if msg.starts_with("unknown variant") {
            "use one of the listed values".to_string()
        } else if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
            "write a value of the expected type".to_string()
        } else {
            "see scenarios/sentiment.toml for a valid example".to_string()
        };
        ConfigError { key, problem: msg.to_string(), fix }
    }

    /// The error with its key inside section `section`.
    pub fn within(mut self, section: &str) -> ConfigError {
        self.key = format!("{section}.{}", self.key);
        self
    }
}

/// Deserialize `value`, an error naming the key where serde stopped inside `section`.
pub fn read<T: serde::de::DeserializeOwned>(
    section: &str,
    value: toml::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            section.to_string()
        } else if section.is_empty() {
            path
        } else {
            format!("{section}.{path}")
        };
        ConfigError::from_serde(&path, e.inner().message())
    })
}

/// `Ok` when `cond` holds, else the error for `key`.
pub fn need(
    cond: bool,
    key: &str,
    problem: impl FnOnce() -> String,
    fix: &str,
) -> Result<(), ConfigError> {
    if cond {
        Ok(())
    } else {
        Err(ConfigError { key: key.to_string(), problem: problem(), fix: fix.to_string() })
    }
}

/// `key` finite and > 0.
pub fn positive(key: &str, v: f64, fix: &str) -> Result<(), ConfigError> {
    need(v.is_finite() && v > 0.0, key, || format!("must be finite and > 0 (got {v})"), fix)
}

/// `key` finite and >= 0.
pub fn non_negative(key: &str, v: f64, fix: &str) -> Result<(), ConfigError> {
    need(v.is_finite() && v >= 0.0, key, || format!("must be finite and >= 0 (got {v})"), fix)
}

/// `key` in [0, 1].
pub fn in_unit(key: &str, v: f64, fix: &str) -> Result<(), ConfigError> {
    need((0.0..=1.0).contains(&v), key, || format!("must be in [0, 1] (got {v})"), fix)
}

/// `key` in (0, 1).
pub fn in_open_unit(key: &str, v: f64, fix: &str) -> Result<(), ConfigError> {
    need(v > 0.0 && v < 1.0, key, || format!("must be in (0, 1) (got {v})"), fix)
}

/// `key` a learning rate: in [0, 1).
pub fn learning_rate(key: &str, v: f64, fix: &str) -> Result<(), ConfigError> {
    need((0.0..1.0).contains(&v), key, || format!("must be in [0, 1) (got {v})"), fix)
}

/// `key` a count in `lo..=hi`.
pub fn in_range(key: &str, v: usize, lo: usize, hi: usize, fix: &str) -> Result<(), ConfigError> {
    need((lo..=hi).contains(&v), key, || format!("must be in {lo}..={hi} (got {v})"), fix)
}

/// Each `(key, count)` in `1..=MAX_COUNT`: a world's corpus and prompt counts.
pub fn counts(values: &[(&str, usize)], fix: &str) -> Result<(), ConfigError> {
    values.iter().try_for_each(|&(key, n)| in_range(key, n, 1, MAX_COUNT, fix))
}

/// `key` a count of at least 1.
pub fn at_least_one(key: &str, v: usize, fix: &str) -> Result<(), ConfigError> {
    need(v >= 1, key, || "must be at least 1".into(), fix)
}

/// The variant names of an enum that serde reads tagged by `tag` (`#[serde(tag = "...")]`),
/// in declaration order: the registry of a family (the preference losses) is its enum, and
/// nothing keeps a second list. Read from the error serde raises for an unknown variant.
pub fn variant_names<T: serde::de::DeserializeOwned>(tag: &str) -> &'static [&'static str] {
    use serde::de::value::MapDeserializer;
    let input = MapDeserializer::<_, Expected>::new(std::iter::once((tag, "\u{0}")));
    match T::deserialize(input) {
        Err(Expected(names)) => names,
        Ok(_) => &[],
    }
}

/// The error type [`variant_names`] reads with: it keeps the list serde expected.
#[derive(Debug)]
struct Expected(&'static [&'static str]);

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expected one of {:?}", self.0)
    }
}

impl std::error::Error for Expected {}

impl serde::de::Error for Expected {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Expected(&[])
    }
    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        Expected(expected)
    }
}

/// Upper limits that keep a typo in an exponent from running for centuries or allocating the
/// machine away; each is far past what a CPU-sized study uses.
pub const MAX_STEPS: usize = 10_000_000;
pub const MAX_COUNT: usize = 10_000_000;
pub const MAX_BATCH: usize = 65_536;

/// Below this, logits / T overflow float32 and sampling draws from inf/NaN.
pub const MIN_TEMPERATURE: f64 = 0.01;

/// A temperature sampling can use: 0 (greedy, where allowed) or in [MIN_TEMPERATURE, 4].
pub fn sampling_temperature(t: f64, greedy_ok: bool) -> bool {
    (greedy_ok && t == 0.0) || (t.is_finite() && (MIN_TEMPERATURE..=4.0).contains(&t))
}

/// A message with every number of more than 16 characters written in scientific form
/// (`1e-250`, not 250 digits) and control characters escaped: one readable line.
pub fn compact_numbers(text: &str) -> String {
    let mut out = String::new();
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        match token.parse::<f64>() {
            Ok(v) if token.len() > 16 => out.push_str(&format!("{v:e}")),
            _ => out.push_str(token),
        }
        token.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            if c.is_control() {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
        }
    }
    flush(&mut token, &mut out);
    out
}

/// The 1-based line where `a.b.c` is written in the TOML text (`[a.b]` then `c = ...`).
pub fn find_line(text: &str, key: &str) -> Option<usize> {
    let (table, leaf) = match key.rfind('.') {
        Some(i) => (&key[..i], &key[i + 1..]),
        None => ("", key),
    };
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            // `[train]   # a comment`: the header is what stands before the comment.
            let header = line.split('#').next().unwrap_or("").trim();
            current = header.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            if current == key {
                return Some(i + 1);
            }
            continue;
        }
        if current == table {
            if let Some(eq) = line.find('=') {
                if line[..eq].trim() == leaf {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

/// User text for a one-line message: at most 64 characters, control characters escaped.
pub fn shown(text: &str) -> String {
    let head: String = text
        .chars()
        .take(64)
        .flat_map(|c| if c.is_control() { c.escape_debug().collect::<Vec<_>>() } else { vec![c] })
        .collect();
    let more = if text.chars().count() > 64 { "..." } else { "" };
    format!("{head}{more}")
}

/// `${NAME}` in a path replaced by the environment variable (the data folder of the real
/// scenarios: `${ALIGNLAB_DATA}`); an unset variable is an error naming `key`.
pub fn expand_path(path: &str, key: &str) -> Result<std::path::PathBuf, ConfigError> {
    let mut out = String::new();
    let mut rest = path;
    while let Some(i) = rest.find("${") {
        let end = rest[i..].find('}').map(|j| i + j).ok_or_else(|| ConfigError {
            key: key.into(),
            problem: format!("{path:?} opens `${{` without closing it"),
            fix: "write ${NAME}".into(),
        })?;
        let name = &rest[i + 2..end];
        let value = std::env::var(name).map_err(|_| ConfigError {
            key: key.into(),
            problem: format!("{path:?} names ${{{name}}}, which is not set"),
            fix: format!("export {name}=<the folder that holds the downloads>"),
        })?;
        out.push_str(&rest[..i]);
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(std::path::PathBuf::from(out))
}
