//! Glob patterns of LinkPolicy `roleNames` and `managedPolicyArns`: `*` matches any run of
//! characters (none included), everything else matches itself, case-sensitively — the way IAM
//! compares ARNs. A dozen lines of our own instead of a crate: the one operator needed has no
//! character classes, escapes or path semantics to get wrong.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and where in `text` its run currently ends.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if p.get(pi) == Some(&b'*') {
            star = Some((pi, ti));
            pi += 1;
        } else if p.get(pi) == Some(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` swallow one more character and try again after it.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_match_any_run_and_the_rest_matches_itself() {
        let table = [
            ("*", "", true),
            ("*", "AccountLinkerAccess", true),
            ("AccountLinkerAccess", "AccountLinkerAccess", true),
            ("AccountLinkerAccess", "accountlinkeraccess", false),
            ("AccountLinkerAccess", "AccountLinkerAccessX", false),
            ("team-a-*", "team-a-reader", true),
            ("team-a-*", "team-a-", true),
            ("team-a-*", "team-b-reader", false),
            ("*-reader", "team-a-reader", true),
            ("*-reader", "team-a-readers", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "a-b-b-c", true),
            ("a*b*c", "a-c-b", false),
            ("**", "x", true),
            ("", "", true),
            ("", "x", false),
            (
                "arn:aws:iam::aws:policy/ReadOnly*",
                "arn:aws:iam::aws:policy/ReadOnlyAccess",
                true,
            ),
            (
                "arn:aws:iam::aws:policy/ReadOnly*",
                "arn:aws:iam::aws:policy/AdministratorAccess",
                false,
            ),
            (
                "arn:aws:iam::*:policy/team-a/*",
                "arn:aws:iam::111111111111:policy/team-a/deploy",
                true,
            ),
            (
                "arn:aws:iam::*:policy/team-a/*",
                "arn:aws:iam::111111111111:policy/team-b/deploy",
                false,
            ),
        ];
        for (pattern, text, want) in table {
            assert_eq!(matches(pattern, text), want, "{pattern:?} ~ {text:?}");
        }
    }
}
