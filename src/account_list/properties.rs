//! Property tests of the account-list parser: lists written the ways people write them parse to
//! exactly their IDs, and any text at all is either parsed or reported line by line.

use proptest::prelude::*;

use super::{Entry, parse};

/// One line of a well-formed list: its IDs and how they are written.
#[derive(Clone, Debug)]
enum Line {
    Blank,
    Comment(String),
    /// IDs joined by commas, each maybe quoted and padded.
    Ids(Vec<(String, bool, usize)>),
    /// A CSV row: the ID, then descriptive columns.
    Row(String, Vec<String>),
}

fn account_id() -> impl Strategy<Value = String> {
    "[0-9]{12}"
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        1 => Just(Line::Blank),
        1 => "[ -~]{0,20}".prop_map(Line::Comment),
        4 => prop::collection::vec((account_id(), any::<bool>(), 0usize..3), 1..4).prop_map(Line::Ids),
        2 => (account_id(), prop::collection::vec("[A-Za-z][A-Za-z _-]{0,12}", 1..3))
            .prop_map(|(id, cols)| Line::Row(id, cols)),
    ]
}

/// The text of `lines` (with an optional header) and the entries a correct parser returns.
fn render(header: Option<&str>, lines: &[Line], crlf: bool) -> (String, Vec<Entry>) {
    let mut text = Vec::new();
    let mut expected = Vec::new();
    if let Some(header) = header {
        text.push(header.to_string());
    }
    for line in lines {
        let number = text.len() + 1;
        text.push(match line {
            Line::Blank => String::new(),
            Line::Comment(c) => format!("# {c}"),
            Line::Ids(ids) => ids
                .iter()
                .map(|(id, quoted, pad)| {
                    expected.push(Entry {
                        line: number,
                        account: id.clone(),
                    });
                    let id = if *quoted {
                        format!("\"{id}\"")
                    } else {
                        id.clone()
                    };
                    format!("{}{id}{}", " ".repeat(*pad), " ".repeat(*pad))
                })
                .collect::<Vec<_>>()
                .join(","),
            Line::Row(id, cols) => {
                expected.push(Entry {
                    line: number,
                    account: id.clone(),
                });
                format!("{id},{}", cols.join(","))
            }
        });
    }
    (text.join(if crlf { "\r\n" } else { "\n" }), expected)
}

proptest! {
    #[test]
    fn well_formed_lists_parse_to_exactly_their_ids(
        header in prop::option::of(prop::sample::select(vec!["account", "AccountId", "account_id", "Account ID", "id"])),
        lines in prop::collection::vec(line(), 0..30),
        crlf in any::<bool>(),
    ) {
        let (text, expected) = render(header, &lines, crlf);
        prop_assert_eq!(parse(&text), Ok(expected));
    }

    #[test]
    fn a_malformed_line_is_reported_with_its_number_and_nothing_else_is(
        lines in prop::collection::vec(line(), 0..20),
        bad in prop_oneof!["[0-9]{1,11}", "[0-9]{13,16}", "[0-9]{4}[a-z][0-9]{7}", "[A-Za-z]{3,10}"],
        at in any::<prop::sample::Index>(),
    ) {
        let (text, _) = render(None, &lines, false);
        let mut rows: Vec<String> = if text.is_empty() { Vec::new() } else { text.split('\n').map(str::to_string).collect() };
        // A bad word as the very first line could read as a header; put an ID first then.
        rows.insert(0, "000000000001".to_string());
        let position = 1 + at.index(rows.len());
        rows.insert(position, bad.clone());
        let errors = parse(&rows.join("\n")).expect_err("a malformed line is an error");
        prop_assert_eq!(errors.len(), 1, "{:?}", errors);
        prop_assert_eq!(errors[0].line, position + 1);
        let shown: String = bad.chars().take(40).collect();
        prop_assert!(errors[0].reason.contains(&shown), "{}", errors[0].reason);
    }

    #[test]
    fn any_text_is_parsed_or_reported_line_by_line(text in "(?s).{0,400}") {
        let lines = text.lines().count();
        match parse(&text) {
            Ok(entries) => {
                for e in entries {
                    prop_assert!((1..=lines).contains(&e.line));
                    prop_assert!(super::is_account_id(&e.account));
                }
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!((1..=lines).contains(&e.line), "{} of {}", e.line, lines);
                    prop_assert!(!e.reason.is_empty());
                }
            }
        }
    }
}
