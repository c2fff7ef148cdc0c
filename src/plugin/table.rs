//! Plain-text tables as kubectl prints them: upper-case headers, columns padded with three
//! spaces, no borders; ages as kubectl shows them (`45s`, `12m`, `5h`, `3d`).

use k8s_openapi::jiff::Timestamp;

/// A table being built.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

/// A cell: its text and, on a terminal, its colour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
}

/// How a cell is coloured on a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Good,
    Bad,
    Busy,
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self {
            text,
            tone: Tone::Plain,
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        text.to_string().into()
    }
}

impl Cell {
    pub fn toned(text: impl Into<String>, tone: Tone) -> Self {
        Self {
            text: text.into(),
            tone,
        }
    }
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, with ANSI colours when `colour`.
    pub fn render(&self, colour: bool) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.text.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<Cell> = self
            .headers
            .iter()
            .map(|h| Cell::from(h.as_str()))
            .collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                let last = i + 1 == columns.min(row.len());
                let pad = if last {
                    0
                } else {
                    widths[i] - cell.text.chars().count() + 3
                };
                line.push_str(&paint(&cell.text, cell.tone, colour));
                line.push_str(&" ".repeat(pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` in the colour of `tone` (ANSI), or as it is.
pub fn paint(text: &str, tone: Tone, colour: bool) -> String {
    let code = match tone {
        Tone::Plain => return text.to_string(),
        Tone::Good => "32",
        Tone::Bad => "31",
        Tone::Busy => "33",
    };
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// How long ago `then` was, as kubectl prints ages; `-` when unknown.
pub fn age(then: Option<Timestamp>, now: Timestamp) -> String {
    let Some(then) = then else {
        return "-".into();
    };
    let seconds = now.duration_since(then).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `text` cut to `max` characters, with `…` when cut; newlines become spaces.
pub fn clip(text: &str, max: usize) -> String {
    let flat = text.replace('\n', " ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_and_colour_only_when_asked() {
        let mut t = Table::new(&["NAME", "READY"]);
        t.row(vec!["prod".into(), Cell::toned("True", Tone::Good)]);
        t.row(vec!["a-long-name".into(), Cell::toned("False", Tone::Bad)]);
        assert_eq!(
            t.render(false),
            "NAME          READY\nprod          True\na-long-name   False\n"
        );
        assert!(t.render(true).contains("\x1b[32mTrue\x1b[0m"));
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let ago = |s: i64| Some(Timestamp::from_second(1_800_000_000 - s).unwrap());
        let cases = [
            (ago(5), "5s"),
            (ago(119), "119s"),
            (ago(120), "2m"),
            (ago(7199), "119m"),
            (ago(7200), "2h"),
            (ago(3 * 86_400), "3d"),
            (ago(-10), "0s"),
            (None, "-"),
        ];
        for (then, want) in cases {
            assert_eq!(age(then, now), want, "{then:?}");
        }
    }

    #[test]
    fn long_text_is_clipped() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdefghijkl", 5), "abcd…");
    }
}
