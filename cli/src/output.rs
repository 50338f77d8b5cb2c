//! Printing read verbs: a readable list like PowerShell's `| FL` by
//! default, JSON with `--json` (what scripts rely on).

use std::io::Write;

/// One object to print: labelled text for people, a JSON object for scripts.
#[derive(Clone, Debug)]
pub struct Record {
    /// Label as printed, its text, and its key in `json`.
    fields: Vec<(&'static str, String, String)>,
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
        let key = snake_case(label);
        self.fields.push((label, text.to_owned(), key.clone()));
        self.json.insert(key, value);
        self
    }
}

impl Record {
    /// Adds a field whose JSON key is given (the model's field name).
    pub fn keyed(mut self, label: &'static str, key: &str, text: &str, value: serde_json::Value) -> Self {
        self.fields.push((label, text.to_owned(), key.to_owned()));
        self.json.insert(key.to_owned(), value);
        self
    }

    /// The fields in print order: label and JSON value (what `postern ems`
    /// formats as PowerShell does).
    pub fn properties(&self) -> impl Iterator<Item = (&'static str, &serde_json::Value)> {
        self.fields
            .iter()
            .map(|(label, _, key)| (*label, self.json.get(key).unwrap_or(&serde_json::Value::Null)))
    }
}

/// What a verb produced, printed by `postern` and read by `postern ems`.
#[derive(Debug)]
pub enum Reply {
    /// Nothing to print.
    Done,
    /// Text printed as it is (a thumbprint line, a PEM request).
    Text(String),
    /// Objects: a list, or JSON when `json`; a JSON array when `as_array`.
    Records {
        /// The objects.
        records: Vec<Record>,
        /// Print JSON.
        json: bool,
        /// A JSON array even for one object.
        as_array: bool,
    },
}

impl Reply {
    /// Prints the reply as the `postern` verbs do.
    pub fn print(&self) -> anyhow::Result<()> {
        match self {
            Reply::Done => Ok(()),
            Reply::Text(text) => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())?;
                Ok(out.flush()?)
            }
            Reply::Records {
                records,
                json,
                as_array,
            } => print_records(records, *json, *as_array),
        }
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
        let width = record.fields.iter().map(|(l, _, _)| l.len()).max().unwrap_or(0);
        for (label, text, _) in &record.fields {
            writeln!(out, "{label:<width$} : {text}")?;
        }
    }
    Ok(())
}

/// Prints one line on stdout, returning the write error (a closed pipe
/// included) instead of panicking as `println!` does.
pub fn line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Whether `error` is stdout's reader having gone away (`postern … | head
/// -1`): the listing ends quietly, as a Unix filter does.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Records as a reply (`as_array` for list verbs).
pub fn records(records: Vec<Record>, json: bool, as_array: bool) -> Reply {
    Reply::Records {
        records,
        json,
        as_array,
    }
}
