//! The Prometheus text exposition format, version 0.0.4: `# HELP` and
//! `# TYPE` before each metric's samples, label values escaped (`\\`,
//! `\"`, `\n`), HELP text escaped (`\\`, `\n`), one sample per line.

use std::fmt::Write as _;

use crate::metrics::Family;

/// The `Content-Type` of the output of [`render`].
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Formats the families.
pub(crate) fn render(families: &[Family]) -> String {
    let mut out = String::with_capacity(4096);
    for f in families {
        out.push_str("# HELP ");
        out.push_str(f.desc.name);
        out.push(' ');
        escape_into(&mut out, f.desc.help, false);
        out.push_str("\n# TYPE ");
        out.push_str(f.desc.name);
        out.push(' ');
        out.push_str(f.desc.kind.as_str());
        out.push('\n');
        for (labels, value) in &f.series {
            out.push_str(f.desc.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (name, value)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(name);
                    out.push_str("=\"");
                    escape_into(&mut out, value, true);
                    out.push('"');
                }
                out.push('}');
            }
            // Writing into a String cannot fail.
            let _ = writeln!(out, " {value}");
        }
    }
    out
}

/// Escapes `\` and newline, and `"` in label values.
fn escape_into(out: &mut String, s: &str, label_value: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label_value => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_differs_for_help_and_label_values() {
        let mut help = String::new();
        escape_into(&mut help, "a \"b\" \\ c\nd", false);
        assert_eq!(help, "a \"b\" \\\\ c\\nd");
        let mut label = String::new();
        escape_into(&mut label, "a \"b\" \\ c\nd", true);
        assert_eq!(label, "a \\\"b\\\" \\\\ c\\nd");
    }
}
