//! YAML the way Kubernetes tools read it, for the manifests the CLI prints (CRDs, `import-csv`).
//!
//! Built on `serde-saphyr`, the YAML library kube-client itself uses, so the operator carries
//! one YAML stack and it is maintained (`serde_yaml` is deprecated and unmaintained).

/// Why rendering failed (only for values serde cannot describe as YAML).
pub type Error = serde_saphyr::ser::Error;

/// Renders one YAML document.
///
/// Long single-line strings (descriptions, CEL rules) stay on one line, because folding them at
/// 80 columns makes CRDs harder to read and diff; multi-line text stays a literal block. Strings a
/// YAML 1.1 reader such as kubectl would take for a boolean, number or null (`on`, `no`,
/// `111122223333`) are quoted, the library's default.
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_saphyr::to_string_with_options(
        value,
        serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX },
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn round_trip(value: &Value) -> Value {
        let yaml = to_string(value).unwrap();
        serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{yaml}\ndoes not parse: {e}"))
    }

    #[test]
    fn strings_that_look_like_other_types_stay_strings() {
        for s in [
            "111122223333",
            "012345678901",
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "True",
            "NULL",
            "~",
            "",
            "1.5",
            "1e3",
            "0x1F",
            "0o17",
            ".inf",
            "2024-01-01",
            "1:20",
            "- a",
            "a: b",
            "#x",
            "'q'",
            "\"q\"",
            "*a",
            "&a",
            "!tag",
            "%x",
            "@x",
            "`x`",
            " lead",
            "trail ",
        ] {
            let value = json!({ "k": s });
            assert_eq!(round_trip(&value), value, "{s:?}");
            let yaml = to_string(&value).unwrap();
            let rendered = yaml.trim_end().strip_prefix("k: ").unwrap();
            if matches!(s, "yes" | "no" | "on" | "off" | "y" | "n" | "111122223333") {
                assert!(
                    rendered.starts_with(['\'', '"']),
                    "{s:?} must be quoted for YAML 1.1 readers: {yaml}"
                );
            }
        }
    }

    #[test]
    fn long_lines_stay_on_one_line_and_text_stays_a_literal_block() {
        let long = "word ".repeat(40).trim_end().to_string();
        let value = json!({ "long": long, "text": "one\ntwo\n", "empty": {}, "list": [] });
        let yaml = to_string(&value).unwrap();
        assert!(yaml.contains(&format!("long: {long}\n")), "{yaml}");
        assert!(yaml.contains("text: |\n  one\n  two\n"), "{yaml}");
        assert!(
            yaml.contains("empty: {}\n") && yaml.contains("list: []\n"),
            "{yaml}"
        );
        assert_eq!(round_trip(&value), value);
    }

    #[test]
    fn every_crd_reads_back_as_the_object_it_was_rendered_from() {
        for crd in crate::api::crds() {
            let expected = serde_json::to_value(&crd).unwrap();
            assert_eq!(round_trip(&expected), expected);
            let yaml = to_string(&crd).unwrap();
            let parsed: Value = serde_saphyr::from_str(&yaml).unwrap();
            assert_eq!(parsed, expected, "{:?}", crd.metadata.name);
        }
    }
}
