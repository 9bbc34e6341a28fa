//! The Kubernetes manifests in `deploy/kubernetes/`: valid against the Kubernetes schemas
//! (PyPI's `kubernetes-validate`, strict), every file in the kustomization, and the settings
//! that make a rollout safe (probes, a grace period longer than the drain, non-root with a
//! read-only root filesystem, secrets by file, migrations by the Job only).

use serde_json::Value;

use crate::helpers::require_services;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kubernetes");

fn yaml_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(DIR)
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

/// Every document of every file, as JSON (read by PyYAML, which kubernetes-validate brings).
fn documents() -> Option<Value> {
    let script = "import json,sys,yaml,glob,os\n\
        d=sys.argv[1]\n\
        print(json.dumps({os.path.basename(f): list(yaml.safe_load_all(open(f))) for f in sorted(glob.glob(d+'/*.yaml'))}))";
    let out = std::process::Command::new("python3").args(["-c", script, DIR]).output().ok()?;
    out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("JSON"))
}

#[test]
fn kubernetes_manifests_are_valid_and_safe() {
    let has = std::process::Command::new("kubernetes-validate").arg("--version").output();
    if !has.is_ok_and(|o| o.status.success()) {
        let why = "PyPI's kubernetes-validate is not installed (pip install kubernetes-validate)";
        assert!(!require_services(), "KEYROLL_TEST_REQUIRE_SERVICES=1 but {why}");
        eprintln!("skipping the Kubernetes manifests test: {why}");
        return;
    }
    let files: Vec<String> = yaml_files().into_iter().map(|f| format!("{DIR}/{f}")).collect();
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .args(&files)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    let docs = documents().expect("PyYAML reads the manifests");
    let one = |file: &str| docs[file][0].clone();
    let mut listed: Vec<String> = one("kustomization.yaml")["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    listed.push("kustomization.yaml".into());
    listed.sort();
    assert_eq!(listed, yaml_files(), "every manifest is in the kustomization");

    let config = one("configmap.yaml")["data"].clone();
    assert_eq!(config["KEYROLL_MIGRATE_ON_START"], "false", "only the Job migrates");
    for secret in ["KEYROLL_DATABASE_URL_FILE", "KEYROLL_REDIS_URL_FILE", "KEYROLL_MASTER_KEY_FILE"] {
        assert!(config[secret].as_str().is_some_and(|p| p.starts_with("/run/secrets/")), "{secret} by reference");
    }
    assert!(config.get("KEYROLL_DATABASE_URL").is_none(), "no secret in the ConfigMap");
    let drain: u64 = config["KEYROLL_DRAIN_SECONDS"].as_str().and_then(|s| s.parse().ok()).expect("drain");

    let pod = one("deployment.yaml")["spec"]["template"]["spec"].clone();
    let node = &pod["containers"][0];
    let pre_stop = node["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().expect("preStop");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("grace period");
    assert!(grace > pre_stop + drain + 10, "the grace period covers preStop, the drain and in-flight requests");
    assert_eq!(node["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(node["livenessProbe"]["httpGet"]["path"], "/healthz");
    for (what, sc) in [("pod", &pod["securityContext"]), ("container", &node["securityContext"])] {
        if what == "pod" {
            assert_eq!(sc["runAsNonRoot"], true);
        } else {
            assert_eq!(
                (sc["readOnlyRootFilesystem"].as_bool(), sc["allowPrivilegeEscalation"].as_bool()),
                (Some(true), Some(false))
            );
        }
    }
    let job = one("migrate-job.yaml");
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["args"], serde_json::json!(["migrate"]));
    assert_eq!(one("servicemonitor.yaml")["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(one("pdb.yaml")["spec"]["minAvailable"], 2);
    assert_eq!(one("hpa.yaml")["spec"]["scaleTargetRef"]["name"], "keyroll");
}

/// The compose file runs three nodes behind nginx on PostgreSQL and Redis, migrating once
/// before they start; its nginx configuration passes `nginx -t`.
#[test]
fn compose_runs_three_nodes_behind_nginx() {
    let script = "import json,sys,yaml\nprint(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/compose.yaml");
    let out = std::process::Command::new("python3").args(["-c", script, path]).output().expect("python3 runs");
    if !out.status.success() {
        let why = "PyYAML is not installed (pip install pyyaml; kubernetes-validate brings it)";
        assert!(!require_services(), "KEYROLL_TEST_REQUIRE_SERVICES=1 but {why}");
        eprintln!("skipping the compose test: {why}");
        return;
    }
    let compose: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let services = compose["services"].as_object().expect("services");
    let nodes: Vec<&String> = services.keys().filter(|k| k.starts_with("keyroll-")).collect();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for n in &nodes {
        let env = &services[n.as_str()]["environment"];
        assert_eq!(env["KEYROLL_MIGRATE_ON_START"], "false", "{n}");
        assert!(env["KEYROLL_TRUSTED_PROXIES"].is_string(), "{n} trusts nginx");
        assert_eq!(services[n.as_str()]["depends_on"]["migrate"]["condition"], "service_completed_successfully");
    }
    assert_eq!(services["migrate"]["command"], serde_json::json!(["migrate"]));
    for s in ["postgres", "redis", "nginx"] {
        assert!(services.contains_key(s), "{s}");
    }

    let Some(nginx) = crate::gateways_real::tool("nginx") else { return };
    let dir = std::env::temp_dir().join(format!("keyroll-lb-{}", crate::helpers::unique()));
    std::fs::create_dir_all(&dir).expect("dir");
    // The node names resolve inside compose only; here they become loopback ports.
    let lb = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nginx/keyroll-lb.conf"))
        .expect("lb config")
        .replace("keyroll-1:8080", "127.0.0.1:18081")
        .replace("keyroll-2:8080", "127.0.0.1:18082")
        .replace("keyroll-3:8080", "127.0.0.1:18083");
    std::fs::write(dir.join("lb.conf"), lb).expect("written");
    let d = dir.display();
    let main = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{}}\nhttp {{\n  access_log off;\n  include {d}/lb.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).expect("written");
    let out = std::process::Command::new(nginx)
        .args(["-t", "-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf")])
        .output()
        .expect("nginx runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

/// The container image: a build stage, then the binary alone on a small base, run as a
/// non-root user, with a health check the image can run without a shell.
#[test]
fn the_image_is_the_binary_alone_non_root_with_a_health_check() {
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = file.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    let stages: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l.starts_with("FROM ")).map(|(i, _)| i).collect();
    assert_eq!(stages.len(), 2, "a build stage and the image: {stages:?}");
    let image = &lines[stages[1]..];
    let base = image[0];
    assert!(base.contains("distroless") || base.contains("-slim"), "a small base: {base}");
    let copies: Vec<&&str> = image.iter().filter(|l| l.starts_with("COPY")).collect();
    assert!(copies.iter().any(|l| l.contains("target/release/keyroll")), "the binary: {copies:?}");
    assert!(copies.iter().all(|l| l.contains("--from=build")), "nothing from the build context: {copies:?}");
    let user = image.iter().find(|l| l.starts_with("USER ")).expect("a USER");
    assert!(!user.contains("root") && !user.ends_with(" 0") && !user.contains(" 0:"), "non-root: {user}");
    let check = image.iter().position(|l| l.starts_with("HEALTHCHECK")).expect("a HEALTHCHECK");
    let command = image[check..].iter().find(|l| l.contains("CMD")).expect("its command");
    assert!(
        command.starts_with("CMD [") && command.contains("\"healthcheck\""),
        "exec form, the binary asking itself: {command}"
    );
    assert!(file.contains("strip target/release/keyroll"), "the binary is stripped");
}
