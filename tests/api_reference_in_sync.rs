//! `docs/api-reference.md` must hold exactly what the CRD schemas generate.

use std::path::Path;

#[test]
fn the_api_reference_matches_the_crd_schemas() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api-reference.md");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == account_linker::reference::api_reference(),
        "docs/api-reference.md differs from what the CRD schemas generate; regenerate with \
         `make docs` and commit the result"
    );
}
