//! `crds/` must hold exactly what the Rust types generate.

use std::path::Path;

use account_linker::{api, cli};

#[test]
fn checked_in_crds_match_the_types() {
    assert_folder_matches("crds");
}

#[test]
fn the_chart_ships_the_same_crds() {
    assert_folder_matches("charts/account-linker/crds");
}

fn assert_folder_matches(folder: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let mut expected: Vec<String> = Vec::new();
    for crd in api::crds() {
        let name = cli::crd_file_name(&crd);
        let generated = cli::crd_yaml(&crd).expect("CRD renders as YAML");
        let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{folder}/{name} differs from what the API types generate; regenerate with `make crds` \
             and commit the result"
        );
        expected.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{folder}/ is readable: {e}"))
        .map(|e| {
            e.expect("readable entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    present.sort();
    expected.sort();
    assert_eq!(
        present, expected,
        "{folder}/ holds other files than the API generates; regenerate with `make crds`"
    );
}
