//! `account-linker import-csv` as a user runs it: good files print manifests the real API server
//! accepts (server-side dry run, strict validation); bad files exit non-zero with every bad line.

mod support;

use std::process::{Command, Output};

fn import_csv(text: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_account-linker"));
    cmd.args(["import-csv", "-"]).args(args);
    support::run(cmd, Some(text))
}

#[test]
fn bad_rows_exit_non_zero_naming_every_line() {
    let out = import_csv(
        "account,name\n111122223333,ok\n12345,short\nabc\n444455556666\n",
        &["--name", "fleet"],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "manifests printed despite errors");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 bad line(s)"), "{stderr}");
    assert!(
        stderr.contains("line 3: ") && stderr.contains("line 4: "),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_is_accepted_by_the_api_server() {
    let env = support::env();
    let client = env.client().await;
    let ns = support::TestNamespace::create(&client, "import-csv").await;
    let out = import_csv(
        "Account ID,Name\n111122223333,prod\n\"444455556666\",dev\n777788889999, 111122223333\n",
        &[
            "--name",
            "fleet",
            "--namespace",
            &ns.name,
            "--region",
            "eu-west-1",
            "--call-as",
            "DelegatedAdmin",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut apply = env.kubectl();
    apply.args(["apply", "--dry-run=server", "--validate=strict", "-f", "-"]);
    let stdout = support::run_ok(apply, Some(&String::from_utf8_lossy(&out.stdout)));
    assert!(
        stdout.contains("configmap/fleet-accounts created (server dry run)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bulkregistration.accountlinker.dev/fleet created (server dry run)"),
        "{stdout}"
    );
    ns.cleanup().await;
}
