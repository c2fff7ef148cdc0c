//! Lists of AWS account IDs as people keep them: CSV exports (the ID in the first column, other
//! columns ignored, an optional header), comma-separated lists, or one ID per line — mixed
//! freely. A line that is none of these is reported with its number, never skipped.

use std::fmt;

/// An account ID and the line it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number.
    pub line: usize,
    /// The 12-digit account ID.
    pub account: String,
}

/// A line that holds no valid account ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, naming the offending value.
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Malformed lines reported per list; the rest are counted. A condition message is limited to
/// 32 KiB, and nobody reads a thousand errors: the first ones show what is wrong.
pub const MAX_REPORTED_LINES: usize = 10;

/// `items` joined with "; ", at most `max` of them and a count of the rest, so a message stays
/// short whatever the input.
pub fn capped<T: fmt::Display>(items: &[T], max: usize) -> String {
    let mut out = items
        .iter()
        .take(max)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let rest = items.len().saturating_sub(max);
    if rest > 0 {
        out.push_str(&format!(" (and {rest} more)"));
    }
    out
}

/// Column names accepted as a header in front of the IDs.
const HEADERS: &[&str] = &["account", "accountid", "account_id", "account id", "id"];

/// Parses `text`; every malformed line is reported (the IDs of good lines are kept apart, so
/// a caller can show all problems at once).
pub fn parse(text: &str) -> Result<Vec<Entry>, Vec<LineError>> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    let mut seen_content = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim().trim_start_matches('\u{feff}');
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = trimmed.split(',').map(unquote).collect();
        let first = fields[0];
        if !seen_content && HEADERS.contains(&first.to_ascii_lowercase().as_str()) {
            seen_content = true;
            continue;
        }
        seen_content = true;
        if !is_account_id(first) {
            errors.push(LineError {
                line,
                reason: describe(first),
            });
            continue;
        }
        // Digits after the first column make it a comma-separated list of IDs; anything
        // else makes it a CSV row whose other columns are descriptive.
        let list = fields[1..]
            .iter()
            .all(|f| f.is_empty() || f.bytes().all(|b| b.is_ascii_digit()));
        let ids = if list { &fields[..] } else { &fields[..1] };
        for id in ids.iter().filter(|f| !f.is_empty()) {
            if is_account_id(id) {
                entries.push(Entry {
                    line,
                    account: (*id).to_string(),
                });
            } else {
                errors.push(LineError {
                    line,
                    reason: describe(id),
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// True for exactly twelve ASCII digits.
pub fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

fn unquote(field: &str) -> &str {
    let field = field.trim();
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
        .trim()
}

fn describe(value: &str) -> String {
    let shown: String = value.chars().take(40).collect();
    if value.is_empty() {
        "empty account ID".into()
    } else if value.bytes().all(|b| b.is_ascii_digit()) {
        format!("{shown:?} has {} digits; an account ID has 12", value.len())
    } else {
        format!("{shown:?} is not a 12-digit account ID")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Vec<String> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|e| e.account)
            .collect()
    }

    #[test]
    fn newline_comma_and_csv_forms_mix() {
        let text =
            "111111111111\n222222222222,333333333333\n\n# comment\n444444444444,prod,payments\n";
        assert_eq!(
            ids(text),
            [
                "111111111111",
                "222222222222",
                "333333333333",
                "444444444444"
            ]
        );
    }

    #[test]
    fn header_quotes_crlf_and_bom_are_accepted() {
        let text = "\u{feff}Account ID,Name\r\n\"012345678901\",\"dev\"\r\n 210987654321 , ops\r\n";
        assert_eq!(ids(text), ["012345678901", "210987654321"]);
    }

    #[test]
    fn line_numbers_are_kept() {
        let entries = parse("\n111111111111\n\n222222222222").unwrap();
        assert_eq!(entries[0].line, 2);
        assert_eq!(entries[1].line, 4);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_numbers() {
        let errors = parse("111111111111\n12345\nabc,def\n222222222222,33\n").unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4]);
        assert_eq!(
            errors[0].to_string(),
            "line 2: \"12345\" has 5 digits; an account ID has 12"
        );
        assert!(errors[1].reason.contains("\"abc\""), "{}", errors[1]);
        assert!(errors[2].reason.contains("\"33\""), "{}", errors[2]);
    }

    #[test]
    fn a_header_is_only_a_header_on_the_first_content_line() {
        let errors = parse("111111111111\naccount\n").unwrap_err();
        assert_eq!(errors[0].line, 2);
    }

    #[test]
    fn reports_are_capped_with_a_count_of_the_rest() {
        let text: String = (0..1000).map(|i| format!("bad{i}\n")).collect();
        let errors = parse(&text).unwrap_err();
        assert_eq!(errors.len(), 1000);
        let report = capped(&errors, MAX_REPORTED_LINES);
        assert!(report.starts_with("line 1: \"bad0\""), "{report}");
        assert!(report.contains("line 10: "), "{report}");
        assert!(!report.contains("line 11: "), "{report}");
        assert!(report.ends_with(" (and 990 more)"), "{report}");
        assert!(report.len() < 1000, "{}", report.len());
        assert_eq!(capped(&["a", "b"], 2), "a; b");
        assert_eq!(capped::<&str>(&[], 2), "");
    }

    #[test]
    fn long_values_are_shortened_in_reports() {
        let errors = parse(&"9".repeat(5000)).unwrap_err();
        let text = errors[0].to_string();
        assert!(text.contains("has 5000 digits"), "{text}");
        assert!(text.len() < 100, "{text}");
    }

    #[test]
    fn empty_input_is_an_empty_list() {
        assert_eq!(parse("").unwrap(), []);
        assert_eq!(parse("\n# nothing\n").unwrap(), []);
    }
}

#[cfg(test)]
mod properties;
