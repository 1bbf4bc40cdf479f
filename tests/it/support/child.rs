//! The `lastmile` binary serving in a child process, on free loopback ports: for what needs a
//! process of its own (signals, its environment, the ONNX Runtime it loads). Killed when dropped.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

pub struct Served {
    child: Child,
    /// `host:port` of the serving HTTP API.
    pub rest: String,
    /// `http://host:port` of the serving gRPC API.
    pub grpc: String,
    /// `host:port` of the admin HTTP API.
    pub admin: String,
    /// What the server logged (its stderr), read when asked.
    log: tempfile::NamedTempFile,
}

impl Served {
    pub fn start(manifest: &Path) -> Served {
        Served::start_with(manifest, &[], &[])
    }

    /// With `args` after the listeners and `env` set on the child.
    pub fn start_with(manifest: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lastmile"));
        command
            .args(["serve", "--manifest"])
            .arg(manifest)
            .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
            .args(["--admin-addr", "127.0.0.1:0"])
            .args(["--admin-grpc-addr", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied());
        Served::spawn(command)
    }

    /// `command`, which runs `lastmile serve` with every listener on a free port (the binary, or
    /// a container running it), until it prints where it listens.
    pub fn spawn(mut command: Command) -> Served {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("the server's command starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (mut rest, mut grpc, mut admin) = (None, None, None);
        let mut lines = std::io::BufReader::new(stdout).lines();
        // The server prints where it listens once it does (or exits, ending the loop).
        for line in &mut lines {
            let line = line.expect("the server's stdout reads");
            let address = |prefix: &str| {
                let rest = line.trim_start().strip_prefix(prefix)?;
                rest.split_whitespace().next().map(str::to_owned)
            };
            rest = rest.or_else(|| address("REST  http://"));
            grpc = grpc.or_else(|| address("gRPC  ").map(|a| format!("http://{a}")));
            admin = admin.or_else(|| address("admin http://"));
            if rest.is_some() && grpc.is_some() && admin.is_some() {
                break;
            }
        }
        // Whatever it prints later must find the pipe open.
        std::thread::spawn(move || lines.for_each(drop));
        let said = std::fs::read_to_string(log.path()).unwrap_or_default();
        Served {
            rest: rest.unwrap_or_else(|| panic!("the server printed no REST address:\n{said}")),
            grpc: grpc.expect("the server printed its gRPC address"),
            admin: admin.expect("the server printed its admin address"),
            child,
            log,
        }
    }

    /// The server's resident memory now, in KiB (Linux's `VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        self.proc_status("VmRSS:")
    }

    /// How many threads the server runs now.
    pub fn threads(&self) -> u64 {
        self.proc_status("Threads:")
    }

    /// A number from `/proc/PID/status`, its unit dropped.
    fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("/proc/PID/status has {field}"))
    }

    /// Sends `signal` (`"HUP"`, `"TERM"`) to the server.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal}");
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap()
    }

    /// The admin API's status.
    pub async fn status(&self) -> Value {
        let url = format!("http://{}/admin/v1/status", self.admin);
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }

    /// One item through `/v1/predict`: the answering version and the top label.
    pub async fn predict(&self, title: &str) -> (String, String) {
        let url = format!("http://{}/v1/predict", self.rest);
        let response = reqwest::Client::new()
            .post(url)
            .json(&json!({"item": {"title": title}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "the live ensemble answers");
        let body: Value = response.json().await.unwrap();
        (
            body["ensemble"]["version"].as_str().unwrap().to_owned(),
            body["item"]["predictions"][0]["label"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    }

    /// Waits for the process to exit (after a signal); its exit code.
    pub fn wait(mut self) -> Option<i32> {
        self.child.wait().unwrap().code()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
