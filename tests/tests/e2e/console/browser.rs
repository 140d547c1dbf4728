//! The console in a real browser: Debian's `chromium`, headless, driven
//! through `chromedriver` (WebDriver over HTTP on loopback) against the
//! real operator on the test bed, with history in PostgreSQL. Screenshots
//! of each step go to `<target>/tmp/console-screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (`apt-get install chromium
//! chromium-driver`; `bash .ci/run` installs them); fails, never skips,
//! without them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sluice_crds::RunPhase;
use sluice_e2e::operator::{eventually, free_port};

use super::{EDITOR_TOKEN, STRANGER_TOKEN, failing_workflow, set_up_users, sign_in, wait_mirrored};
use crate::operator_support::Bed;

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one headless chromium session.
struct Browser {
    driver: tokio::process::Child,
    http: reqwest::Client,
    session: String,
    base: String,
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

impl Browser {
    async fn start() -> Self {
        for program in ["chromium", "chromedriver"] {
            let found = std::process::Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            assert!(
                found,
                "{program} is missing: the console's browser tests need Debian's chromium and chromedriver \
                 (apt-get install chromium chromium-driver, or run bash .ci/run)"
            );
        }
        let port = free_port().expect("a free port");
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("failed to start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        eventually("chromedriver ready", || {
            let http = http.clone();
            let base = base.clone();
            async move {
                let status: Value = http
                    .get(format!("{base}/status"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (status["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        let profile = tempfile::tempdir().expect("a profile folder");
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:loggingPrefs": {"browser": "ALL"},
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--window-size=1280,1600", "--no-first-run", "--disable-extensions",
                        format!("--user-data-dir={}", profile.keep().display()),
                    ],
                },
            }}}))
            .send()
            .await
            .expect("failed to reach chromedriver")
            .json()
            .await
            .expect("a WebDriver answer");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver opened no session: {created}"))
            .to_owned();
        std::fs::create_dir_all(screenshots()).expect("a screenshots folder");
        Self {
            driver,
            http,
            session,
            base,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("failed to reach chromedriver")
            .json()
            .await
            .expect("a WebDriver answer");
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The element matching `css` once it is there (the pages load data
    /// after they show).
    async fn find(&self, css: &str) -> String {
        eventually(&format!("element {css}"), || async move {
            let found = self
                .command(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            found[ELEMENT].as_str().map(str::to_owned)
        })
        .await
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until the text of `css` contains `wanted`, and returns it.
    async fn wait_text(&self, css: &str, wanted: &str) -> String {
        eventually(&format!("{css} saying {wanted:?}"), || async move {
            let text = self.text(css).await;
            text.contains(wanted).then_some(text)
        })
        .await
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Clicks `css` the way the page's own click does (headless
    /// chromium's pointer clicks did not reach the sign-in button).
    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        let answer = self
            .command(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({"script": "arguments[0].click()", "args": [{ELEMENT: element}]})),
            )
            .await;
        assert!(
            answer.is_null() || answer.get("error").is_none(),
            "clicking {css}: {answer}"
        );
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a base64 screenshot"))
            .expect("a PNG");
        let path = screenshots().join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("failed to write a screenshot");
        path
    }

    /// What the page shows and what the browser logged: for failures.
    async fn report(&self) -> String {
        let text = self
            .script(
                "return [document.body.innerText, location.href, (document.getElementById('token') || {}).value, \
                 performance.getEntriesByType('resource').map(e => e.name + ' ' + e.responseStatus), \
                 window.submits, window.lastError, document.activeElement && document.activeElement.outerHTML, \
                 document.querySelector('form') && document.querySelector('form').checkValidity()]",
            )
            .await;
        let logs = self
            .command(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        format!("page: {text}\nbrowser log: {logs}")
    }

    async fn sign_in(&self, console: &str, token: &str, operator_log: &std::path::Path) {
        self.open(&format!("{console}/")).await;
        self.type_into("#token", token).await;
        self.script(
            "window.submits = 0; document.querySelector('form').addEventListener('submit', () => window.submits++); \
             window.onerror = (message) => { window.lastError = String(message); }; \
             window.addEventListener('unhandledrejection', (event) => { window.lastError = String(event.reason); });",
        )
        .await;
        self.click("#sign-in").await;
        for _ in 0..100 {
            let who = self
                .script("return document.getElementById('who').textContent")
                .await;
            if who.as_str().is_some_and(|who| who.contains("Signed in as")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let log = std::fs::read_to_string(operator_log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "sign-in did not finish; {}\noperator log (newest first):\n{}",
            self.report().await,
            tail.join("\n")
        );
    }

    async fn sign_out(&self) {
        self.click("#sign-out").await;
        self.find("#token").await;
    }

    async fn finish(mut self) {
        self.command(reqwest::Method::DELETE, "", None).await;
        let _ = self.driver.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser_reads_a_failed_run_resumes_it_and_starts_one_from_the_form() {
    let bed = Bed::start("console-browser").await;
    let namespace = bed.cluster.namespace().to_owned();
    set_up_users(&bed);
    let identities = bed.cluster.stand_in().expect("the stand-in").identities();
    identities.add_token(EDITOR_TOKEN, "editor", &["team-editors"]);
    identities.allow(
        "team-editors",
        &namespace,
        "sluice.dev",
        &["workflowruns", "workflows", "schedules"],
        &["get", "list", "watch", "create", "patch"],
    );
    identities.authorize_impersonation();
    bed.apply_workflow("greeting", failing_workflow()).await;
    bed.create_run("greeting-1", "greeting", json!({"input": {"name": "ada"}}))
        .await;
    bed.wait_terminal("greeting-1", RunPhase::Failed).await;
    wait_mirrored(&bed, "greeting-1", "failed").await;
    // History of a namespace the editor may not read.
    sqlx::query(
        "INSERT INTO workspaces (name, owner_id) VALUES ('someone-elses', '5111ce00-0000-4000-8000-000000000001')",
    )
    .execute(bed.database.pool())
    .await
    .expect("failed to add another namespace's workspace");

    let console = bed.operator.console_url();
    let browser = Browser::start().await;

    // Sign in: the namespace filter offers only what the token may read.
    browser
        .sign_in(&console, EDITOR_TOKEN, bed.operator.log_path())
        .await;
    browser.wait_text("table.runs tbody", "greeting-1").await;
    let options = browser
        .script(
            "return [...document.querySelectorAll('#namespace option')].map(o => o.textContent)",
        )
        .await;
    assert_eq!(options, json!(["All readable", namespace]));
    browser.screenshot("1-runs-list").await;

    // The failed run: why, the failing node's input, output and logs.
    browser
        .open(&format!("{console}/#/runs/{namespace}/greeting-1"))
        .await;
    let failure = browser.wait_text("section.failure", "check").await;
    assert!(failure.contains("What to do"), "{failure}");
    let detail = browser.wait_text("#node-detail", "Node check").await;
    assert!(
        detail.contains("Input") && detail.contains("Output"),
        "{detail}"
    );
    let logs = browser.text("#logs").await;
    assert!(logs.contains("retrying"), "{logs}");
    let graph = browser
        .script("return [...document.querySelectorAll('.graph .node')].map(n => n.getAttribute('aria-label'))")
        .await;
    assert_eq!(
        graph,
        json!(["greet (transform): Succeeded", "check (shell): Failed"]),
        "the graph is coloured by node phase"
    );
    browser.screenshot("2-failed-run").await;

    // Fix the cause, then resume from the page.
    let mut fixed = failing_workflow();
    fixed["nodes"][1]["shell"]["script"] = json!("echo fixed >&2");
    bed.apply_workflow("greeting", fixed).await;
    browser.click("#resume").await;
    let resumed: String = eventually("the page on the resumed run", || async {
        let hash = browser.script("return location.hash").await;
        let hash = hash.as_str()?.to_owned();
        let name = hash.rsplit('/').next()?.to_owned();
        (name != "greeting-1" && name.starts_with("greeting-")).then_some(name)
    })
    .await;
    let run = bed.wait_terminal(&resumed, RunPhase::Succeeded).await;
    assert_eq!(run.spec.resume_from.as_deref(), Some("greeting-1"));
    browser.wait_text("p.summary", "Succeeded").await;
    browser.screenshot("3-resumed-run").await;

    // Start a run from the form generated from the input schema.
    browser
        .open(&format!("{console}/#/workflows/{namespace}/greeting/run"))
        .await;
    let label = browser.text("label[for=input-name]").await;
    assert!(label.contains("who to greet"), "{label}");
    browser.type_into("#input-name", "grace").await;
    browser.screenshot("4-run-now-form").await;
    browser.click("#start-run").await;
    let started: String = eventually("the page on the started run", || async {
        let hash = browser.script("return location.hash").await;
        let name = hash.as_str()?.rsplit('/').next()?.to_owned();
        (name.starts_with("greeting-") && name != "greeting-1" && name != resumed).then_some(name)
    })
    .await;
    let run = bed.wait_terminal(&started, RunPhase::Succeeded).await;
    assert_eq!(run.spec.input, Some(json!({"name": "grace"})));
    browser.wait_text("p.summary", "Succeeded").await;
    browser.screenshot("5-started-run").await;

    // A user without rights is refused in the page.
    browser.sign_out().await;
    browser
        .sign_in(&console, STRANGER_TOKEN, bed.operator.log_path())
        .await;
    let caption = browser.wait_text("table.runs caption", "may not").await;
    assert!(caption.contains("any namespace"), "{caption}");
    browser
        .open(&format!("{console}/#/runs/{namespace}/greeting-1"))
        .await;
    let refused = browser.wait_text("#refused", "may not").await;
    assert!(refused.contains("stranger"), "{refused}");
    browser.screenshot("6-refused").await;
    // And at the endpoint.
    let http = reqwest::Client::new();
    let stranger = sign_in(&http, &console, STRANGER_TOKEN).await;
    let status = http
        .get(format!("{console}/api/runs/{namespace}/greeting-1"))
        .header(reqwest::header::COOKIE, &stranger.cookie)
        .send()
        .await
        .expect("failed to reach the console")
        .status();
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);

    browser.finish().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    bed.finish().await;
}
