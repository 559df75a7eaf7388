//! The dataset world's files: JSON lines (one object per line, gzipped where the name ends in
//! `.gz`) or Parquet (`.parquet`, with the default `parquet` cargo feature) read into rows of
//! text, in the formats preference data
//! comes in. Each row is a prompt, a demonstration (the chosen or only
//! response) and, where the format has one, a rejected response:
//!
//! - `preference`: TRL's standard preference rows, `prompt` / `chosen` / `rejected`.
//! - `prompt_completion`: TRL's prompt-completion rows, `prompt` / `completion`.
//! - `text`: TRL's language-modelling rows, `text` (IMDb reviews: the world cuts prompts from it).
//! - `hh`: Anthropic HH's raw rows, two full dialogues `chosen` / `rejected`, split at the last
//!   `"\n\nAssistant:"`; the text up to it (included) must be the same in both.
//! - `tldr`: the TL;DR comparisons, a post (`info.post`), two `summaries` (objects with `text`)
//!   and a `choice` (0 or 1).
//!
//! Columns are named by dotted paths (`info.post`) and can be renamed in the scenario. Every
//! problem is one error naming the file, the line (a Parquet file: the row) and the column.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The layout of a dataset's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Preference,
    PromptCompletion,
    Text,
    Hh,
    Tldr,
}

/// `[world.columns]`: where each field is found in a row (dotted paths into the JSON object);
/// an empty name is the format's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    /// The prompt (default `prompt`; `tldr`: `info.post`).
    pub prompt: String,
    /// The chosen response (`preference`), or the chosen dialogue (`hh`) (default `chosen`).
    pub chosen: String,
    /// The rejected response or dialogue (default `rejected`).
    pub rejected: String,
    /// The completion of `prompt_completion` rows (default `completion`).
    pub completion: String,
    /// The text of `text` rows (default `text`).
    pub text: String,
    /// The TL;DR comparisons' list of two summaries, objects with `text` (default `summaries`).
    pub summaries: String,
    /// The TL;DR comparisons' choice, 0 or 1 (default `choice`).
    pub choice: String,
    /// A column naming each row's split, `"train"` or `"val"`, for the preference pairs (as
    /// `export-prefs` writes it); empty: a seeded fraction of the prompts is held out.
    pub split: String,
}

impl Columns {
    fn get<'a>(&'a self, field: &str, format: Format) -> &'a str {
        let (set, default) = match field {
            "prompt" => (&self.prompt, if format == Format::Tldr { "info.post" } else { "prompt" }),
            "chosen" => (&self.chosen, "chosen"),
            "rejected" => (&self.rejected, "rejected"),
            "completion" => (&self.completion, "completion"),
            "text" => (&self.text, "text"),
            "summaries" => (&self.summaries, "summaries"),
            _ => (&self.choice, "choice"),
        };
        if set.is_empty() {
            default
        } else {
            set
        }
    }
}

/// One row: its prompt (empty in the `text` format), its demonstration and, for a pair, the
/// rejected response; the line it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Where it came from: the file and `line 12` (JSON lines) or `row 12` (Parquet).
    pub at: String,
    pub prompt: String,
    pub chosen: String,
    pub rejected: Option<String>,
    /// The row's split, where `columns.split` names a column: true for `"val"`.
    pub val: Option<bool>,
    /// The responses were cut at a length limit (`chosen_truncated`, `rejected_truncated`, as
    /// `export-prefs` marks them): no `<eos>` is appended to them.
    pub cut: [bool; 2],
}

/// A problem with one row: file, line, column and what to do.
#[derive(Debug)]
pub struct DataError {
    pub problem: String,
    pub fix: String,
}

fn bad(file: &Path, at: &str, column: &str, problem: &str, fix: &str) -> DataError {
    let col = if column.is_empty() { String::new() } else { format!(", column `{column}`") };
    DataError { problem: format!("{} {at}{col}: {problem}", file.display()), fix: fix.to_string() }
}

/// The rows of `file` in `format` (Parquet where the name ends in `.parquet`, else JSON lines)
/// and the SHA-256 of the file's bytes, read once. With `empty_responses` an empty response is
/// kept (one that ends at once, `<eos>` alone: alignlab's own exports hold such samples of
/// pi_SFT) rather than refused.
pub fn read(
    file: &Path,
    format: Format,
    columns: &Columns,
    empty_responses: bool,
) -> Result<(Vec<Row>, String), DataError> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(file).map_err(|e| unreadable(file, e))?;
    let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let values = if file.extension().is_some_and(|e| e == "parquet") {
        parquet_values(file, bytes)?
    } else {
        json_lines(file, bytes)?
    };
    let rows = values
        .iter()
        .map(|(at, v)| row(v, format, (columns, empty_responses), (file, at)))
        .collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Err(bad(
            file,
            "line 1",
            "",
            "the file has no rows",
            "give a file with at least one row",
        ));
    }
    Ok((rows, sha256))
}

fn unreadable(file: &Path, e: impl std::fmt::Display) -> DataError {
    DataError {
        problem: format!("{} cannot be read ({e})", file.display()),
        fix: "give the path of a JSON-lines file (one JSON object per line) or a .parquet file"
            .into(),
    }
}

/// Each non-blank line's JSON object, with its line number; a `.gz` file is gunzipped first
/// (Anthropic HH's files are `train.jsonl.gz`).
fn json_lines(file: &Path, mut bytes: Vec<u8>) -> Result<Vec<(String, Value)>, DataError> {
    if file.extension().is_some_and(|e| e == "gz") {
        use std::io::Read;
        let mut out = vec![];
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| unreadable(file, format!("not gzip: {e}")))?;
        bytes = out;
    }
    let mut out = vec![];
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let at = format!("line {}", i + 1);
        let text = std::str::from_utf8(raw).map_err(|e| {
            bad(file, &at, "", &format!("is not UTF-8 ({e})"), "save the file as UTF-8")
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(text).map_err(|e| {
            bad(file, &at, "", &format!("is not JSON ({e})"), "write one JSON object per line")
        })?;
        out.push((at, v));
    }
    Ok(out)
}

/// Each row of a Parquet file as a JSON object (nested columns as nested objects and lists).
#[cfg(feature = "parquet")]
fn parquet_values(file: &Path, bytes: Vec<u8>) -> Result<Vec<(String, Value)>, DataError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let not_parquet = |e: parquet::errors::ParquetError| {
        DataError {
        problem: format!("{} is not a Parquet file this build reads ({e})", file.display()),
        fix: "give an uncompressed or snappy-compressed Parquet file (the datasets library's default), or JSON lines".into(),
    }
    };
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).map_err(not_parquet)?;
    let mut out = vec![];
    for (i, row) in reader.get_row_iter(None).map_err(not_parquet)?.enumerate() {
        out.push((format!("row {}", i + 1), row.map_err(not_parquet)?.to_json_value()));
    }
    Ok(out)
}

#[cfg(not(feature = "parquet"))]
fn parquet_values(file: &Path, _bytes: Vec<u8>) -> Result<Vec<(String, Value)>, DataError> {
    Err(DataError {
        problem: format!("{} is Parquet, and this build reads JSON lines only", file.display()),
        fix: "build with the default features (the `parquet` feature), or write the rows as JSON lines".into(),
    })
}

/// The value at a dotted path of `v`.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

fn row(
    v: &Value,
    format: Format,
    (columns, empty_responses): (&Columns, bool),
    (file, line): (&Path, &str),
) -> Result<Row, DataError> {
    let field = |name: &str| -> Result<String, DataError> {
        let col = columns.get(name, format);
        match at(v, col) {
            None => Err(bad(file, line, col, "is missing", &format!("name the column that holds the {name} with world.columns.{name}"))),
            Some(Value::String(s))
                if s.trim().is_empty() && !(empty_responses && name != "prompt") =>
            {
                Err(bad(file, line, col, "is empty", "drop the row or fill it in (or set world.empty_responses = true to keep empty responses)"))
            }
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(bad(
                file,
                line,
                col,
                &format!("is {} where text is expected", kind_of(other)),
                &format!("name a text column with world.columns.{name}"),
            )),
        }
    };
    let val = match columns.split.as_str() {
        "" => None,
        col => match at(v, col).and_then(Value::as_str) {
            Some("train") => Some(false),
            Some("val") => Some(true),
            _ => {
                return Err(bad(
                    file,
                    line,
                    col,
                    "is not \"train\" or \"val\"",
                    "name each row's split, or leave world.columns.split empty",
                ))
            }
        },
    };
    let cut = ["chosen_truncated", "rejected_truncated"]
        .map(|k| v.get(k).and_then(Value::as_bool).unwrap_or(false));
    let make = |prompt, chosen, rejected| Row {
        at: format!("{} {line}", file.display()),
        prompt,
        chosen,
        rejected,
        val,
        cut,
    };
    Ok(match format {
        Format::Preference => make(field("prompt")?, field("chosen")?, Some(field("rejected")?)),
        Format::PromptCompletion => make(field("prompt")?, field("completion")?, None),
        Format::Text => make(String::new(), field("text")?, None),
        Format::Hh => {
            let (c, r) = (field("chosen")?, field("rejected")?);
            let (prompt, chosen, rejected) = split_dialogues(&c, &r).map_err(|p| {
                bad(file, line, columns.get("chosen", format), &p, "give Anthropic HH's raw rows (two full dialogues ending with an Assistant turn)")
            })?;
            make(prompt, chosen, Some(rejected))
        }
        Format::Tldr => {
            let post = field("prompt")?;
            let (chosen, rejected) = tldr_pair(v, columns, (file, line))?;
            make(post, chosen, Some(rejected))
        }
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The marker HH's dialogues give the assistant's turns with.
pub const ASSISTANT: &str = "\n\nAssistant:";

/// An HH row's two dialogues as (prompt, chosen reply, rejected reply): the prompt is the
/// chosen dialogue up to its last `"\n\nAssistant:"` (included), and the rejected dialogue
/// must start with it.
pub fn split_dialogues(chosen: &str, rejected: &str) -> Result<(String, String, String), String> {
    let cut =
        chosen.rfind(ASSISTANT).ok_or("the chosen dialogue has no \"\\n\\nAssistant:\" turn")?
            + ASSISTANT.len();
    let prompt = &chosen[..cut];
    let Some(rest) = rejected.strip_prefix(prompt) else {
        return Err("the two dialogues differ before the chosen one's last Assistant turn".into());
    };
    let (c, r) = (&chosen[cut..], rest);
    if c.trim().is_empty() || r.trim().is_empty() {
        return Err("a final Assistant reply is empty".into());
    }
    Ok((prompt.to_string(), c.to_string(), r.to_string()))
}

/// A TL;DR comparison's (chosen, rejected) summaries: `summaries[choice]` and the other.
fn tldr_pair(
    v: &Value,
    columns: &Columns,
    (file, line): (&Path, &str),
) -> Result<(String, String), DataError> {
    let (scol, ccol) =
        (columns.get("summaries", Format::Tldr), columns.get("choice", Format::Tldr));
    let fix = "give the TL;DR comparisons' rows: `summaries` a list of two objects with `text`, `choice` 0 or 1";
    let texts: Vec<&str> = match at(v, scol).and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|s| s.get("text").and_then(Value::as_str).or_else(|| s.as_str()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(file, line, scol, "holds a summary without `text`", fix))?,
        None => return Err(bad(file, line, scol, "is missing or not a list", fix)),
    };
    if texts.len() != 2 {
        return Err(bad(file, line, scol, &format!("holds {} summaries, not 2", texts.len()), fix));
    }
    let choice = match at(v, ccol).and_then(Value::as_u64) {
        Some(c @ 0..=1) => c as usize,
        _ => return Err(bad(file, line, ccol, "is missing or not 0 or 1", fix)),
    };
    if texts.iter().any(|t| t.trim().is_empty()) {
        return Err(bad(file, line, scol, "holds an empty summary", "drop the row"));
    }
    Ok((texts[choice].to_string(), texts[1 - choice].to_string()))
}
