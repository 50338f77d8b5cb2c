//! Values a script computes: text, booleans, lists, bytes read from a file,
//! and the objects cmdlets output (a certificate, a connector).

use std::path::PathBuf;

use serde_json::Value as Json;

use crate::output::Record;

/// A value in a script.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `$null`, or what a cmdlet with no output returns.
    Null,
    /// `$true` / `$false`.
    Bool(bool),
    /// A string or bareword.
    Text(String),
    /// `a,b,c`, or several objects.
    List(Vec<Value>),
    /// `Get-Content -Encoding Byte`: a file's bytes and where they came from.
    Bytes(FileBytes),
    /// An object a cmdlet output.
    Object(Object),
}

/// Bytes read from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileBytes {
    /// The file (as mapped to this machine).
    pub path: PathBuf,
    /// Its content.
    pub data: Vec<u8>,
}

/// An object with named properties, in the order the cmdlet prints them.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Property names as EMS prints them, and their values.
    pub properties: Vec<(String, Json)>,
}

impl Object {
    /// The object a `postern` verb's record describes.
    pub fn from_record(record: &Record) -> Self {
        Self {
            properties: record
                .properties()
                .map(|(label, value)| (label.to_owned(), value.clone()))
                .collect(),
        }
    }

    /// A property's value (names compare without case, as in PowerShell).
    pub fn get(&self, name: &str) -> Option<&Json> {
        self.properties
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// A property as text, when it is a non-empty string.
    pub fn text(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Json::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }
}

impl Value {
    /// What PowerShell calls the value's type, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "$null",
            Value::Bool(_) => "a boolean",
            Value::Text(_) => "a string",
            Value::List(_) => "a list",
            Value::Bytes(_) => "bytes",
            Value::Object(_) => "an object",
        }
    }

    /// The items of a list, or the value itself as one item (`$null`: none).
    pub fn items(self) -> Vec<Value> {
        match self {
            Value::Null => Vec::new(),
            Value::List(items) => items,
            other => vec![other],
        }
    }
}
