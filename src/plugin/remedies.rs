//! What each condition reason means and what to do about it, read from the one place users
//! read it too: the "Conditions and what to do" tables of docs/user-guide.md, embedded at build
//! time. A test checks that every reason constant of every kind has a row, so the docs and the
//! plugin cannot drift apart.

/// The user guide, embedded: its tables are the plugin's explanations.
const USER_GUIDE: &str = include_str!("../../docs/user-guide.md");

/// The section whose tables are read.
const SECTION: &str = "## Conditions and what to do";

/// One table row about a reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remedy {
    /// `LinkedAccount`, `BulkRegistration` or `MemberAccount`: the `###` heading of the table.
    pub kind: String,
    pub reason: String,
    /// What the first cell adds after the names, e.g. `(Stalled)`, or `before any request`.
    pub qualifier: String,
    pub meaning: String,
    pub what_to_do: String,
}

/// Every row of the tables of [`SECTION`] in `markdown` with three cells (Reason, Meaning,
/// What to do), one [`Remedy`] per reason named in backticks in the first cell.
pub fn parse(markdown: &str) -> Vec<Remedy> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut kind = String::new();
    for line in markdown.lines() {
        if line.starts_with("## ") {
            inside = line.trim() == SECTION;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(heading) = line.strip_prefix("### ") {
            kind = heading.trim().to_string();
            continue;
        }
        let Some(row) = line
            .trim()
            .strip_prefix('|')
            .and_then(|r| r.strip_suffix('|'))
        else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").map(str::trim).collect();
        if cells.len() != 3 || cells[0] == "Reason" || cells[0].starts_with("---") {
            continue;
        }
        let (names, qualifier) = names(cells[0]);
        for reason in names {
            out.push(Remedy {
                kind: kind.clone(),
                reason,
                qualifier: qualifier.clone(),
                meaning: plain(cells[1]),
                what_to_do: plain(cells[2]),
            });
        }
    }
    out
}

/// The backticked names at the start of a first cell, and what follows them.
fn names(cell: &str) -> (Vec<String>, String) {
    let mut names = Vec::new();
    let mut rest = cell.trim();
    while let Some(after) = rest.strip_prefix('`') {
        let Some(end) = after.find('`') else { break };
        names.push(after[..end].to_string());
        rest = after[end + 1..].trim_start_matches([',', ' ']);
    }
    let qualifier = rest.trim_start_matches(['…', ',', ' ']).trim().to_string();
    (names, qualifier)
}

/// Markdown cell text as plain text: links become their text, backticks go.
fn plain(cell: &str) -> String {
    let mut out = String::with_capacity(cell.len());
    let mut rest = cell;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after.find("](").and_then(|close| {
            after[close + 2..]
                .find(')')
                .map(|end| (close, close + 2 + end))
        }) {
            Some((close, end)) => {
                out.push_str(&rest[..open]);
                out.push_str(&after[..close]);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace('`', "")
}

/// The rows about `reason` of `kind`, from the embedded user guide.
pub fn lookup(kind: &str, reason: &str) -> Vec<Remedy> {
    parse(USER_GUIDE)
        .into_iter()
        .filter(|r| r.kind == kind && r.reason == reason)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_per_kind_with_every_name_of_a_cell() {
        let md = "\
## Conditions and what to do

### LinkedAccount

| Reason | Meaning | What to do |
|---|---|---|
| `AccessDenied` | STS refused | fix the `role` ([docs](x.md)) |

### MemberAccount

| Reason | Meaning | What to do |
|---|---|---|
| `DescribeRejected`, `MoveRejected` (Stalled) | refused | fix it |
| `A`, `B`, … (Stalled) | failed | look |

## Upgrading

| Reason | Meaning | What to do |
|---|---|---|
| `Elsewhere` | not | read |
";
        let rows = parse(md);
        let keys: Vec<_> = rows
            .iter()
            .map(|r| (r.kind.as_str(), r.reason.as_str(), r.qualifier.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("LinkedAccount", "AccessDenied", ""),
                ("MemberAccount", "DescribeRejected", "(Stalled)"),
                ("MemberAccount", "MoveRejected", "(Stalled)"),
                ("MemberAccount", "A", "(Stalled)"),
                ("MemberAccount", "B", "(Stalled)"),
            ]
        );
        assert_eq!(rows[0].what_to_do, "fix the role (docs)");
    }

    /// The docs and the plugin are one: every reason a controller writes has a row of its
    /// kind in the user guide.
    #[test]
    fn every_reason_of_every_kind_has_a_remedy() {
        use crate::api::bulk_registration::reason as bulk;
        use crate::api::linked_account::reason as link;
        use crate::api::member_account::reason as member;
        let kinds: [(&str, &[&str]); 3] = [
            (
                "LinkedAccount",
                &[
                    link::VERIFIED,
                    link::VERIFYING,
                    link::SUSPENDED,
                    link::ACCESS_DENIED,
                    link::REGION_DISABLED,
                    link::EXPIRED_TOKEN,
                    link::INVALID_IDENTITY_TOKEN,
                    link::ACCOUNT_MISMATCH,
                    link::AWS_REJECTED,
                    link::EXTERNAL_ID_SECRET_NOT_FOUND,
                    link::EXTERNAL_ID_KEY_NOT_FOUND,
                    link::INVALID_EXTERNAL_ID,
                    link::SECRET_NOT_LABELLED,
                    link::STACK_INSTANCE_SUCCEEDED,
                    link::STACK_INSTANCE_PENDING,
                    link::STACK_INSTANCE_FAILED,
                    link::NOT_PERMITTED,
                ],
            ),
            (
                "BulkRegistration",
                &[
                    bulk::READY,
                    bulk::STACK_SET_CURRENT,
                    bulk::STACK_SET_PENDING,
                    bulk::TRUSTED_ACCESS_DISABLED,
                    bulk::AWS_REJECTED,
                    bulk::OPERATION_RUNNING,
                    bulk::OPERATION_IN_PROGRESS,
                    bulk::INSTANCES_CURRENT,
                    bulk::INSTANCES_PENDING,
                    bulk::INSTANCES_FAILED,
                    bulk::VERIFYING,
                    bulk::NOT_ASSUMABLE,
                    bulk::DELETING,
                    bulk::INVALID_ACCOUNT_LIST,
                    bulk::TEMPLATE_CONFIG_MAP_NOT_FOUND,
                    bulk::TEMPLATE_KEY_NOT_FOUND,
                    bulk::TOKEN_SECRET_NOT_FOUND,
                    bulk::SECRET_NOT_LABELLED,
                    bulk::TOKEN_KEY_NOT_FOUND,
                    bulk::TOKEN_SECRET_CONFLICT,
                    bulk::EXTERNAL_ID_NOT_NO_ECHO,
                    bulk::TEMPLATE_URL_NOT_VERSIONED,
                    bulk::TOO_MANY_TARGETS,
                    bulk::STACK_SET_NOT_OWNED,
                    bulk::NOT_PERMITTED,
                ],
            ),
            (
                "MemberAccount",
                &[
                    member::READY,
                    member::CREATING,
                    member::CREATED,
                    member::VERIFYING,
                    member::NOT_ASSUMABLE,
                    member::RATE_LIMITED,
                    member::NOT_IN_USE,
                    member::AWS_REJECTED,
                    member::DESCRIBE_REJECTED,
                    member::MOVE_REJECTED,
                    member::TAG_REJECTED,
                    member::LINKED_ACCOUNT_NAME_TAKEN,
                    member::NAME_NOT_APPLIED,
                    member::NOT_ACTIVE,
                    member::CLOSE_QUOTA,
                    member::EMAIL_IN_USE,
                    member::NOT_PERMITTED,
                    member::ACCOUNT_NOT_OWNED,
                ],
            ),
        ];
        let rows = parse(USER_GUIDE);
        let mut missing = Vec::new();
        for (kind, reasons) in kinds {
            for reason in reasons {
                if !rows.iter().any(|r| r.kind == kind && r.reason == *reason) {
                    missing.push(format!("{kind}/{reason}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "no row in docs/user-guide.md \"{SECTION}\": {missing:?}"
        );
        assert!(rows.len() > 50, "{}", rows.len());
    }
}
