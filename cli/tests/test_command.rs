//! `.ci/test`, the README's test command: after cargo's output it counts the tests that ran and
//! the skips per service, with how to install each.

use std::path::Path;

fn summary(output: &str) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let saved = dir.path().join("output.txt");
    std::fs::write(&saved, output).expect("write");
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = std::process::Command::new("bash")
        .arg(repository.join(".ci/test"))
        .arg("--summarize")
        .arg(&saved)
        .output()
        .expect("bash runs");
    assert!(run.status.success(), "{run:?}");
    String::from_utf8(run.stdout).expect("UTF-8")
}

#[test]
fn the_test_command_counts_what_ran_and_what_was_skipped_per_service() {
    let output = "\
running 3 tests
SKIPPED a_wrong_or_changed_host_key_is_refused: no sshd: sshd not found (apt-get install openssh-server)
test a_wrong_or_changed_host_key_is_refused ... ok
SKIPPED uploads: no sshd: sshd not found (apt-get install openssh-server)
test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
test x ... SKIPPED postgres_keeps_the_contract: no PostgreSQL: connection refused
SKIPPED a server nobody listed
test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s
";
    assert_eq!(
        summary(output),
        "\
== 6 tests ran: 5 passed, 1 failed (1 ignored, not run)
== 4 skipped, counted as passed above: a service this machine lacks
   2 × sshd (apt-get install openssh-server; the tests start it themselves, as root)
       e.g. a_wrong_or_changed_host_key_is_refused: no sshd: sshd not found (apt-get install openssh-server)
   1 × PostgreSQL (apt-get install postgresql with trust for 127.0.0.1 as .ci/run sets it, or POSTBUD_TEST_POSTGRES=<url>)
       e.g. postgres_keeps_the_contract: no PostgreSQL: connection refused
   1 × a server nobody listed
"
    );
    assert_eq!(
        summary("test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n"),
        "== 2 tests ran: 2 passed, 0 failed\n== nothing skipped: every service the tests use was found\n"
    );
}
