//! `account-linker import-csv` as a user runs it: good files print manifests the real API server
//! accepts (server-side dry run, strict validation); bad files exit non-zero with every bad line.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

fn import_csv(text: &str, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_account-linker"))
        .args(["import-csv", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run account-linker import-csv");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().expect("wait")
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
    let mut apply = env
        .kubectl()
        .args(["apply", "--dry-run=server", "--validate=strict", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    apply.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let applied = apply.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&applied.stdout);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
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
