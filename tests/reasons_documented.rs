//! Every condition reason the operator can write is documented: each string in a `mod reason`
//! block anywhere under src/ must appear, in backticks, in a table row of the user-facing docs.
//! Needs no services.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The docs whose reason tables users read.
const DOCS: &[&str] = &[
    "docs/linkedaccount.md",
    "docs/bulkregistration.md",
    "docs/memberaccount.md",
    "docs/user-guide.md",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of `source` with comments blanked out (string literals kept), so that neither a
/// commented-out reason nor a brace in a comment counts.
fn without_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                out.extend(chars.next());
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for c in chars.by_ref() {
                if c == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The string literals inside every `mod reason { … }` block of `source`.
fn reason_strings(source: &str) -> Vec<String> {
    let code = without_comments(source);
    let mut found = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("mod reason") {
        let after = &rest[at + "mod reason".len()..];
        rest = after;
        let Some(body) = after.trim_start().strip_prefix('{') else {
            continue; // `mod reason;` or a longer name such as `mod reasons`
        };
        let mut depth = 1;
        let mut in_string = false;
        let mut literal = String::new();
        let mut chars = body.chars();
        while depth > 0 {
            let Some(c) = chars.next() else { break };
            match (in_string, c) {
                (true, '"') => {
                    found.push(std::mem::take(&mut literal));
                    in_string = false;
                }
                (true, '\\') => literal.extend(chars.next()),
                (true, c) => literal.push(c),
                (false, '"') => in_string = true,
                (false, '{') => depth += 1,
                (false, '}') => depth -= 1,
                _ => {}
            }
        }
        rest = chars.as_str();
    }
    found
}

/// Every reason the code declares, with the files that declare it.
fn declared_reasons() -> BTreeMap<String, Vec<String>> {
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("readable source");
        for reason in reason_strings(&source) {
            let shown = file
                .strip_prefix(repo())
                .unwrap_or(&file)
                .display()
                .to_string();
            reasons.entry(reason).or_default().push(shown);
        }
    }
    reasons
}

/// Backticked words in table rows of the docs.
fn documented() -> String {
    DOCS.iter()
        .map(|doc| {
            std::fs::read_to_string(repo().join(doc)).unwrap_or_else(|e| panic!("{doc}: {e}"))
        })
        .flat_map(|text| {
            text.lines()
                .filter(|l| l.trim_start().starts_with('|'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_reason_in_the_code_is_in_a_reason_table_of_the_docs() {
    let reasons = declared_reasons();
    // The scanner itself must keep finding the reason modules of all three kinds.
    for expected in ["Verified", "StackSetCurrent", "EmailAlreadyExists"] {
        assert!(
            reasons.contains_key(expected),
            "no `mod reason` declares {expected:?}: the scanner lost the reason modules \
             (found {reasons:?})"
        );
    }
    let tables = documented();
    let missing: Vec<String> = reasons
        .iter()
        .filter(|(reason, _)| !tables.contains(&format!("`{reason}`")))
        .map(|(reason, files)| format!("{reason} (declared in {})", files.join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "condition reasons missing from the reason tables of {DOCS:?}:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_scanner_reads_constants_arrays_and_nested_blocks_but_not_comments() {
    let source = r#"
        pub mod reason {
            /// A doc comment with "Quoted" words and a { brace.
            pub const A: &str = "Alpha";
            // pub const OLD: &str = "Retired";
            pub const FAILURES: &[&str] = &["Beta", "Gamma"];
            pub mod inner { pub const D: &str = "Delta"; }
        }
        pub const OUTSIDE: &str = "Outside";
        mod reasons { const X: &str = "NotAReasonModule"; }
        mod reason { pub const E: &str = "Epsilon"; }
    "#;
    assert_eq!(
        reason_strings(source),
        ["Alpha", "Beta", "Gamma", "Delta", "Epsilon"]
    );
}
