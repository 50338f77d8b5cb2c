//! Printing read verbs: a readable list like PowerShell's `| FL` by
//! default, JSON with `--json` (what scripts rely on).

use std::io::Write;

/// One object to print: labelled text for people, a JSON object for scripts.
pub struct Record {
    fields: Vec<(&'static str, String)>,
    json: serde_json::Map<String, serde_json::Value>,
}

impl Record {
    /// An empty record.
    pub fn new() -> Self {
        Self {
            fields: Vec::new(),
            json: serde_json::Map::new(),
        }
    }

    /// Adds a field: `label` as printed, its text, and its JSON value (under
    /// the label in snake_case).
    pub fn field(mut self, label: &'static str, text: &str, value: serde_json::Value) -> Self {
        self.fields.push((label, text.to_owned()));
        self.json.insert(snake_case(label), value);
        self
    }
}

impl Record {
    /// Adds a field whose JSON key is given (the model's field name).
    pub fn keyed(mut self, label: &'static str, key: &str, text: &str, value: serde_json::Value) -> Self {
        self.fields.push((label, text.to_owned()));
        self.json.insert(key.to_owned(), value);
        self
    }
}

fn snake_case(label: &str) -> String {
    let mut out = String::new();
    for (i, c) in label.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Prints records as `Label : value` blocks, or as JSON (an array when
/// `as_array`, else the single object).
pub fn print_records(records: &[Record], json: bool, as_array: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let values: Vec<serde_json::Value> = records
            .iter()
            .map(|r| serde_json::Value::Object(r.json.clone()))
            .collect();
        let doc = match (as_array, values.as_slice()) {
            (false, [one]) => one.clone(),
            _ => serde_json::Value::Array(values),
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let width = record.fields.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (label, text) in &record.fields {
            writeln!(out, "{label:<width$} : {text}")?;
        }
    }
    Ok(())
}
