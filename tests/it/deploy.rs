//! `deploy/`: the Kubernetes manifests validated offline against Kubernetes' own schemas
//! (`kubernetes-validate --strict`, which rejects unknown fields), the KServe resources against
//! the KServe SDK's model classes (`deploy/kserve/check-schema.py`: the CRDs' YAMLs are in no
//! registry package), and what no schema sees: the Service's ports are the container's, no port
//! is the admin API's, the probes and the Prometheus path are served by a real server, the
//! grace period outlasts preStop plus the drain, and every flag is one `lastmile serve` has.
//!
//! Runs when `LASTMILE_DEPLOY_PYTHON` names the Python of the validators' venv: `scripts/test`
//! points it at `.runtime/deploy-venv` (`scripts/setup.d/47-deploy-validate.sh`). Without it the
//! test says so and passes, so that a bare `cargo test` needs nothing but Rust.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{client, root, TestServer};
use lastmile::service::Limits;

const K8S: [&str; 6] = [
    "configmap.yaml",
    "pvc.yaml",
    "deployment.yaml",
    "service.yaml",
    "hpa.yaml",
    "pdb.yaml",
];
const KSERVE: [&str; 2] = ["servingruntime.yaml", "inferenceservice.yaml"];

fn python() -> Option<PathBuf> {
    let python = std::env::var_os("LASTMILE_DEPLOY_PYTHON").map(PathBuf::from);
    if python.is_none() {
        eprintln!("skipped: set LASTMILE_DEPLOY_PYTHON to the Python of .runtime/deploy-venv");
    }
    python
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} starts: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout + &stderr
}

/// The YAML file's one document, as JSON (read by the venv's PyYAML).
fn load(python: &Path, file: &Path) -> Value {
    let json = run(Command::new(python)
        .arg("-c")
        .arg("import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))")
        .arg(file));
    serde_json::from_str(&json).expect("one YAML document")
}

fn k8s(file: &str) -> PathBuf {
    root().join("deploy/k8s").join(file)
}

fn kserve(file: &str) -> PathBuf {
    root().join("deploy/kserve").join(file)
}

#[test]
fn kubernetes_manifests_pass_kubernetes_schemas_strictly() {
    let Some(python) = python() else { return };
    let cli = python.with_file_name("kubernetes-validate");
    let out = run(Command::new(cli).arg("--strict").args(K8S.map(k8s)));
    assert_eq!(
        out.matches(" passed for resource ").count(),
        K8S.len(),
        "{out}"
    );
    // kustomization.yaml names exactly these files.
    let kustomization = load(&python, &k8s("kustomization.yaml"));
    let resources: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(resources, K8S);
}

#[test]
fn kserve_resources_pass_the_kserve_sdk_models() {
    let Some(python) = python() else { return };
    let script = root().join("deploy/kserve/check-schema.py");
    let out = run(Command::new(&python).arg(&script).args(KSERVE.map(kserve)));
    assert_eq!(out.matches("PASS ").count(), KSERVE.len(), "{out}");
    // The check rejects what a schema must: a misspelt field, a wrong type, a missing name.
    let bad = std::env::temp_dir().join(format!("lastmile-kserve-bad-{}.yaml", std::process::id()));
    let good = std::fs::read_to_string(kserve("servingruntime.yaml")).unwrap();
    for (from, to) in [
        ("protocolVersions:", "protocolVersion:"),
        ("containerPort: 8081", "containerPort: \"8081\""),
        ("- name: kserve-container", "- imagePullPolicy: Always"),
    ] {
        assert!(good.contains(from), "{from}");
        std::fs::write(&bad, good.replace(from, to)).unwrap();
        let out = Command::new(&python)
            .arg(&script)
            .arg(&bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{to} passed");
    }
    std::fs::remove_file(&bad).unwrap();
}

/// The container's `--flag=value` args, `serve` first.
fn flags(container: &Value) -> Vec<(String, String)> {
    let args = container["args"].as_array().unwrap();
    assert_eq!(args[0], "serve");
    args[1..]
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            let (flag, value) = a.split_once('=').unwrap_or((a, ""));
            assert!(flag.starts_with("--"), "{a}");
            (flag.to_string(), value.to_string())
        })
        .collect()
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

fn probe_paths(container: &Value) -> Vec<String> {
    ["startupProbe", "readinessProbe", "livenessProbe"]
        .iter()
        .filter_map(|p| container[p]["httpGet"]["path"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_agree_with_each_other_and_with_the_server() {
    let Some(python) = python() else { return };
    let deployment = load(&python, &k8s("deployment.yaml"));
    let service = load(&python, &k8s("service.yaml"));
    let runtime = load(&python, &kserve("servingruntime.yaml"));
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let kserve_container = &runtime["spec"]["containers"][0];

    // Every flag is one `lastmile serve` takes.
    let help = run(Command::new(env!("CARGO_BIN_EXE_lastmile")).args(["serve", "--help"]));
    let k8s_flags = flags(container);
    for (flag, _) in k8s_flags.iter().chain(&flags(kserve_container)) {
        assert!(
            help.contains(&format!("{flag} ")),
            "`lastmile serve` has no {flag}"
        );
    }
    let flag = |name: &str| {
        k8s_flags
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("the Deployment sets {name}"))
    };

    // Container ports are the listeners' ports; the Service targets exactly them, by name.
    let ports: Vec<(&str, u64)> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    let http = port_of(&flag("--http-addr"));
    let grpc = port_of(&flag("--grpc-addr"));
    assert_eq!(ports, [("http", http), ("grpc", grpc)]);
    for addr in ["--http-addr", "--grpc-addr"] {
        assert!(
            flag(addr).starts_with("0.0.0.0:"),
            "{addr} must listen beyond the pod"
        );
    }
    let service_ports = service["spec"]["ports"].as_array().unwrap();
    assert_eq!(service_ports.len(), 2);
    for p in service_ports {
        let target = p["targetPort"].as_str().expect("targetPort by name");
        assert!(ports.iter().any(|(name, _)| *name == target), "{target}");
    }
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["template"]["metadata"]["labels"]
    );

    // The admin API stays on loopback and no Service or container port is its port.
    let admin: Vec<u64> = ["--admin-addr", "--admin-grpc-addr"]
        .iter()
        .map(|a| {
            let addr = flag(a);
            assert!(
                addr.starts_with("127.0.0.1:"),
                "{a}={addr} must stay on loopback"
            );
            port_of(&addr)
        })
        .collect();
    for p in service_ports {
        let port = p["port"].as_u64().unwrap();
        assert!(
            !admin.contains(&port),
            "the Service exposes admin port {port}"
        );
    }
    assert!(ports.iter().all(|(_, p)| !admin.contains(p)));

    // The grace period outlasts the preStop sleep plus the drain.
    let grace = pod["terminationGracePeriodSeconds"].as_f64().unwrap();
    let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_f64()
        .unwrap();
    let drain: f64 = flag("--drain-timeout").parse().unwrap();
    assert!(
        grace > pre_stop + drain,
        "grace {grace} <= preStop {pre_stop} + drain {drain}"
    );
    // The startup probe allows minutes for loading 50+ models.
    let startup = &container["startupProbe"];
    let allowed =
        startup["periodSeconds"].as_f64().unwrap() * startup["failureThreshold"].as_f64().unwrap();
    assert!(
        allowed >= 300.0,
        "the startup probe allows only {allowed} s"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);

    // KServe: the http1 and h2c ports are the listeners', the Prometheus port is the HTTP one.
    let kserve_flag = |name: &str| {
        let (_, v) = flags(kserve_container)
            .into_iter()
            .find(|(f, _)| f == name)
            .unwrap();
        port_of(&v)
    };
    let kserve_ports: Vec<(&str, u64)> = kserve_container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    let kserve_http = kserve_flag("--http-addr");
    assert_eq!(
        kserve_ports,
        [("http1", kserve_http), ("h2c", kserve_flag("--grpc-addr"))]
    );
    let annotations = &runtime["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.kserve.io/port"],
        kserve_http.to_string()
    );
    let metrics = annotations["prometheus.kserve.io/path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        runtime["spec"]["protocolVersions"],
        serde_json::json!(["v2"])
    );

    // Every probed path, and the metrics path, answers 200 on a real server.
    let server = TestServer::start(Limits::default()).await;
    let mut paths = probe_paths(container);
    paths.extend(probe_paths(kserve_container));
    paths.push(metrics);
    paths.push(
        deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
            .as_str()
            .unwrap()
            .into(),
    );
    assert!(
        paths.iter().any(|p| p == "/v2/health/live")
            && paths.iter().any(|p| p == "/v2/health/ready")
    );
    for path in paths {
        let (status, body) = client::get(&format!("{}{path}", server.http)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}
