//! A real browser for tests and screenshots: Debian's `chromium`, headless, driven over WebDriver
//! by `chromedriver` on a loopback port.
//!
//! The WebDriver client is [`fantoccini`] (maintained, async on tokio, the W3C protocol's
//! commands as typed methods: elements, forms, scripts, cookies, screenshots). It is built without
//! any TLS feature: chromedriver listens on plain HTTP on loopback, so a hyper `HttpConnector` is
//! all it needs and no second TLS stack (its defaults bring native-tls/OpenSSL, its `rustls-tls`
//! brings hyper-rustls with aws-lc-rs) enters the build.
//!
//! One chromedriver serves a whole test binary (started on first use, on a free loopback port);
//! every [`Browser`] is its own session, so its own chromium with its own temporary profile:
//! tests running in parallel share no cookies.
//!
//! ```no_run
//! # async fn run() {
//! use postbud_sandbox::browser::{Browser, Locator};
//! let Some(browser) = Browser::start_or_skip("my_test").await else { return };
//! browser.goto("http://127.0.0.1:8080/console").await.unwrap();
//! let title = browser.text("h1").await.unwrap();
//! browser.close().await;
//! # let _ = (title, Locator::Css("h1"));
//! # }
//! ```

use std::{
    io::Read as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

pub use fantoccini::{self, Client, Locator, elements::Element, error::CmdError};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// How long [`Browser::find`] and [`Browser::click_and_load`] wait for a page.
pub const WAIT: Duration = Duration::from_secs(10);

/// The window every session gets: wide enough for the console's desktop layout.
pub const WINDOW: (u32, u32) = (1280, 900);

/// The chromium binary: `POSTBUD_CHROMIUM` or Debian's `/usr/bin/chromium` (or one on `PATH`).
fn chromium() -> Option<PathBuf> {
    binary(
        "POSTBUD_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    )
}

/// The chromedriver binary: `POSTBUD_CHROMEDRIVER` or Debian's `chromium-driver` package's.
fn chromedriver() -> Option<PathBuf> {
    binary("POSTBUD_CHROMEDRIVER", &["chromedriver"])
}

fn binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/bin")])
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The chromedriver of this process: its address, and the child that holds it up.
#[derive(Debug)]
struct Driver {
    url: String,
    // The wrapper shell waits on its stdin, held here for the life of the process: when the test
    // binary exits (however it exits) the kernel closes the pipe and the wrapper kills
    // chromedriver, so no driver outlives its tests. A static is never dropped, so `kill_on_drop`
    // could not do this.
    _wrapper: Child,
}

static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();

fn driver() -> Result<&'static Driver, String> {
    DRIVER
        .get_or_init(start_driver)
        .as_ref()
        .map_err(Clone::clone)
}

fn start_driver() -> Result<Driver, String> {
    let chromedriver =
        chromedriver().ok_or("chromedriver not found (apt-get install chromium-driver)")?;
    chromium().ok_or("chromium not found (apt-get install chromium)")?;
    let mut last = String::new();
    // A port found free can be taken before chromedriver binds it: a few tries.
    for _ in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let log = std::env::temp_dir().join(format!(
            "postbud-chromedriver-{}-{port}.log",
            std::process::id()
        ));
        let mut wrapper = Command::new("sh")
            .args([
                "-c",
                // `exec 3<&0`-free: the driver gets /dev/null as stdin, the shell keeps the pipe.
                r#""$1" --port="$2" --allowed-ips=127.0.0.1 --log-path="$3" </dev/null >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill $pid 2>/dev/null"#,
                "sh",
            ])
            .arg(&chromedriver)
            .arg(port.to_string())
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", chromedriver.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        match wait_ready(&url, &mut wrapper, &log) {
            Ok(()) => {
                return Ok(Driver {
                    url,
                    _wrapper: wrapper,
                });
            }
            Err(why) => {
                // Closing its stdin makes the wrapper kill chromedriver (killing the wrapper
                // would leave chromedriver running).
                drop(wrapper.stdin.take());
                let _ = wrapper.wait();
                last = why;
            }
        }
    }
    Err(last)
}

/// Polls chromedriver's `/status` until it says ready (it answers within a second or two).
fn wait_ready(url: &str, wrapper: &mut Child, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = url.trim_start_matches("http://");
    loop {
        if let Ok(Some(status)) = wrapper.try_wait() {
            return Err(format!(
                "chromedriver exited ({status}); its log {}:\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        if let Some(body) = http_get(addr, "/status")
            && let Ok(status) = serde_json::from_str::<Value>(&body)
            && status["value"]["ready"] == true
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "chromedriver on {url} not ready after 20s; its log {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A blocking HTTP/1.1 GET on loopback, for the readiness probe (chromedriver refuses HTTP/1.0,
/// and keeps the connection open after its answer whatever the request says: the body is read to
/// its `Content-Length`).
fn http_get(addr: &str, path: &str) -> Option<String> {
    http_request("GET", addr, path)
}

/// A blocking HTTP/1.1 request without a body, read to its `Content-Length`.
fn http_request(method: &str, addr: &str, path: &str) -> Option<String> {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    // Quitting chromium takes a moment.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|length| body.len() >= length) {
                return Some(body.to_owned());
            }
        }
    }
    let text = String::from_utf8_lossy(&response);
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// One headless chromium session with its own temporary profile.
#[derive(Debug)]
pub struct Browser {
    client: Client,
    // Where to end the session if the browser is dropped unclosed (a failed test): chromedriver
    // would otherwise leave its chromium running after the test binary exits.
    session: Option<(String, String)>,
    // Removed when the browser is dropped (after chromium quit on `close`).
    profile: tempfile::TempDir,
}

impl Browser {
    /// A new session on this process's chromedriver (started on first use).
    pub async fn start() -> Result<Self, String> {
        // Starting chromedriver blocks (it polls until ready): off the runtime's threads.
        let driver = tokio::task::spawn_blocking(driver)
            .await
            .map_err(|e| format!("starting chromedriver: {e}"))??;
        let chromium = chromium().ok_or("chromium not found (apt-get install chromium)")?;
        let profile = tempfile::Builder::new()
            .prefix("postbud-chromium-")
            .tempdir()
            .map_err(|e| format!("temporary profile: {e}"))?;
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-extensions".to_owned(),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let client = fantoccini::ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .map_err(|e| format!("new WebDriver session on {}: {e}", driver.url))?;
        let session = client
            .session_id()
            .await
            .ok()
            .flatten()
            .map(|id| (driver.url.trim_start_matches("http://").to_owned(), id));
        Ok(Self {
            client,
            session,
            profile,
        })
    }

    /// [`Browser::start`], or `None` after printing why `test` is skipped (no chromium or
    /// chromedriver here); a failure under `POSTBUD_REQUIRE_SERVICES=1`.
    pub async fn start_or_skip(test: &str) -> Option<Self> {
        match Self::start().await {
            Ok(browser) => Some(browser),
            Err(why) if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!(
                    "{test}: a browser required (POSTBUD_REQUIRE_SERVICES=1) but unavailable: {why}"
                )
            }
            Err(why) => {
                crate::skipped(&format!("{test}: no browser: {why}"));
                None
            }
        }
    }

    /// The WebDriver client, for what the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The session's temporary chromium profile (removed when the browser is dropped).
    pub fn profile(&self) -> &Path {
        self.profile.path()
    }

    /// Loads `url` and waits for it (WebDriver returns once the page has loaded).
    pub async fn goto(&self, url: &str) -> Result<(), CmdError> {
        self.client.goto(url).await
    }

    /// The address the browser is on now (after redirects).
    pub async fn url(&self) -> Result<url::Url, CmdError> {
        self.client.current_url().await
    }

    /// The first element matching the CSS `selector`, waited for up to [`WAIT`] (a page still
    /// loading after a click).
    pub async fn find(&self, selector: &str) -> Result<Element, CmdError> {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(selector))
            .await
    }

    /// Every element matching the CSS `selector` (none is an empty list, not an error).
    pub async fn find_all(&self, selector: &str) -> Result<Vec<Element>, CmdError> {
        self.client.find_all(Locator::Css(selector)).await
    }

    /// Whether anything matches the CSS `selector`.
    pub async fn exists(&self, selector: &str) -> Result<bool, CmdError> {
        Ok(!self.find_all(selector).await?.is_empty())
    }

    /// The rendered text of the first element matching `selector`.
    pub async fn text(&self, selector: &str) -> Result<String, CmdError> {
        self.find(selector).await?.text().await
    }

    /// Replaces the value of the input matching `selector` with `value`, as typing would.
    pub async fn fill(&self, selector: &str, value: &str) -> Result<(), CmdError> {
        let input = self.find(selector).await?;
        input.clear().await?;
        input.send_keys(value).await
    }

    /// Picks the option whose value is `value` in the select matching `selector`.
    pub async fn select(&self, selector: &str, value: &str) -> Result<(), CmdError> {
        self.find(selector).await?.select_by_value(value).await
    }

    /// Clicks the element matching `selector` (a link or a submit button: the page it leads to
    /// has loaded when this returns).
    pub async fn click(&self, selector: &str) -> Result<(), CmdError> {
        self.find(selector).await?.click().await
    }

    /// Clicks the element matching `selector` and waits (up to [`WAIT`]) until a new document
    /// has replaced this one and loaded: for links and submit buttons, whose click may return
    /// before the navigation starts.
    pub async fn click_and_load(&self, selector: &str) -> Result<(), CmdError> {
        let element = self.find(selector).await?;
        self.script("window.__postbudOldPage = true; return null;", vec![])
            .await?;
        element.click().await?;
        let deadline = Instant::now() + WAIT;
        loop {
            // A script during the swap may fail (no document yet): not loaded, try again.
            let loaded = self
                .script(
                    "return window.__postbudOldPage === undefined && document.readyState === 'complete';",
                    vec![],
                )
                .await
                .map(|v| v == Value::Bool(true))
                .unwrap_or(false);
            if loaded {
                return Ok(());
            }
            if Instant::now() > deadline {
                let url = self.client.current_url().await.map(|u| u.to_string());
                return Err(CmdError::WaitTimeout).inspect_err(|_| {
                    tracing::warn!("{selector}: no new page after {WAIT:?} (still on {url:?})")
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `script` in the page (its `arguments` are `args`) and returns what it returns.
    pub async fn script(&self, script: &str, args: Vec<Value>) -> Result<Value, CmdError> {
        self.client.execute(script, args).await
    }

    /// The page's HTML as the browser has it now.
    pub async fn source(&self) -> Result<String, CmdError> {
        self.client.source().await
    }

    /// A PNG of the whole page: the window is made tall enough for the document (up to 8000
    /// pixels) for the shot and put back afterwards.
    pub async fn screenshot(&self) -> Result<Vec<u8>, CmdError> {
        // The window's size includes what is not the page (outer minus inner height).
        let height = self
            .script(
                "return Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0) + Math.max(0, window.outerHeight - window.innerHeight);",
                vec![],
            )
            .await?
            .as_u64()
            .unwrap_or(u64::from(WINDOW.1));
        let height = u32::try_from(height).unwrap_or(8000).clamp(WINDOW.1, 8000);
        self.client.set_window_size(WINDOW.0, height).await?;
        let png = self.client.screenshot().await;
        self.client.set_window_size(WINDOW.0, WINDOW.1).await?;
        png
    }

    /// [`Browser::screenshot`] written to `path`.
    pub async fn screenshot_to(&self, path: &Path) -> Result<(), String> {
        let png = self
            .screenshot()
            .await
            .map_err(|e| format!("screenshot: {e}"))?;
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Ends the session: chromium quits and its profile is removed.
    pub async fn close(mut self) {
        if self.client.clone().close().await.is_ok() {
            self.session = None;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Unclosed (a test panicked): end the session synchronously, since the test's runtime may
        // be gone; chromedriver quits its chromium.
        if let Some((addr, id)) = self.session.take() {
            let _ = http_request("DELETE", &addr, &format!("/session/{id}"));
        }
    }
}
