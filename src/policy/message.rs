//! The NotPermitted message: which field asked for what, and what each policy considered
//! allows instead. Bounded, because it lands in a condition and an Event.

/// Most characters of a message.
pub const MAX_MESSAGE: usize = 1024;
/// Most list items shown of one policy field.
const MAX_ITEMS: usize = 5;
/// Most policies named in one message.
const MAX_POLICIES: usize = 8;

/// Why one policy does not permit an object: `subject` (the field and value asked for) and
/// `allows` (what the policy says instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub subject: String,
    pub allows: String,
}

impl Refusal {
    pub fn new(subject: impl Into<String>, allows: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            allows: allows.into(),
        }
    }
}

/// `[a, b, c]`, at most [`MAX_ITEMS`] items and then how many there are.
pub fn list<S: AsRef<str>>(items: &[S]) -> String {
    let shown: Vec<&str> = items.iter().take(MAX_ITEMS).map(AsRef::as_ref).collect();
    let more = if items.len() > MAX_ITEMS {
        format!(", … ({} in all)", items.len())
    } else {
        String::new()
    };
    format!("[{}{more}]", shown.join(", "))
}

/// One sentence per subject, naming each policy and what it allows:
/// `spec.x=v is not permitted: LinkPolicy a allows …, LinkPolicy b allows …`.
pub fn render(refusals: &[(String, Refusal)]) -> String {
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    for (policy, refusal) in refusals.iter().take(MAX_POLICIES) {
        let line = format!("LinkPolicy {policy} {}", refusal.allows);
        match groups.iter_mut().find(|(s, _)| *s == refusal.subject) {
            Some((_, lines)) => lines.push(line),
            None => groups.push((&refusal.subject, vec![line])),
        }
    }
    let mut text = groups
        .iter()
        .map(|(subject, lines)| format!("{subject} is not permitted: {}", lines.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    if refusals.len() > MAX_POLICIES {
        text.push_str(&format!(
            " (and {} more LinkPolicies)",
            refusals.len() - MAX_POLICIES
        ));
    }
    cap(text)
}

/// `text` cut to [`MAX_MESSAGE`] characters, ending in `…` when cut.
pub fn cap(text: String) -> String {
    if text.chars().count() <= MAX_MESSAGE {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_MESSAGE - 1).collect();
    cut.push('…');
    cut
}
