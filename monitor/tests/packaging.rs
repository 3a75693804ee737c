//! The packaging files (packaging/) parse, and agree with each other and with the daemon: the
//! Kubernetes `DaemonSet` grants the systemd unit's capabilities and starts the daemon as the unit
//! does, with the host's BTF and tracefs mounted read-only; the container image puts the binary
//! and the policy where both expect them; the forwarding examples read the unit's journal; every
//! file the Debian package ships exists. No root needed: tests/tests/package.rs installs the
//! package, tests/tests/forwarding.rs runs the rsyslog example.

use std::{fs, path::Path};

use yaml_rust2::{Yaml, YamlLoader};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read(rel: &str) -> String {
    let path = Path::new(ROOT).join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

fn strings(v: &Yaml) -> Vec<&str> {
    v.as_vec()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s:?}")))
        .collect()
}

/// `KEY=` lines of the unit's `[Service]` section, comments left out.
fn unit_values(key: &str) -> Vec<String> {
    read("packaging/debian/monitor.service")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

/// The unit's capability bounding set, without the `CAP_` prefixes (Kubernetes' spelling).
fn unit_capabilities() -> Vec<String> {
    let mut caps: Vec<String> = unit_values("CapabilityBoundingSet")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(|c| c.strip_prefix("CAP_").expect("CAP_ name").to_owned())
        .collect();
    caps.sort();
    caps
}

/// The daemon's arguments in the unit's `ExecStart` (after the binary).
fn unit_args() -> Vec<String> {
    let exec = unit_values("ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart");
    let mut words = exec[0].split_whitespace().map(str::to_owned);
    assert_eq!(words.next().as_deref(), Some("/usr/bin/monitor"));
    words.collect()
}

#[test]
fn daemonset_runs_the_daemon_like_the_unit() {
    let docs = yaml("packaging/kubernetes/daemonset.yaml");
    let ds = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("DaemonSet"))
        .expect("a DaemonSet");
    let namespace = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Namespace"))
        .expect("its Namespace");
    assert_eq!(
        ds["metadata"]["namespace"].as_str(),
        namespace["metadata"]["name"].as_str()
    );
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostPID"].as_bool(),
        Some(true),
        "kernel pids are host pids"
    );
    assert_eq!(
        ds["spec"]["selector"]["matchLabels"],
        ds["spec"]["template"]["metadata"]["labels"]
    );
    let containers = pod["containers"].as_vec().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(strings(&c["args"]), unit_args(), "the unit's arguments");
    let security = &c["securityContext"];
    assert_eq!(security["privileged"].as_bool(), Some(false));
    assert_eq!(security["runAsUser"].as_i64(), Some(0));
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    let mut added: Vec<&str> = strings(&security["capabilities"]["add"]);
    added.sort_unstable();
    assert_eq!(added, unit_capabilities(), "the unit's capabilities");

    // The kernel's BTF and tracefs, from the host, read-only.
    let volumes = pod["volumes"].as_vec().expect("volumes");
    let mounts = c["volumeMounts"].as_vec().expect("volumeMounts");
    for path in ["/sys/kernel/btf", "/sys/kernel/tracing"] {
        let volume = volumes
            .iter()
            .find(|v| v["hostPath"]["path"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("no hostPath volume for {path}"));
        let mount = mounts
            .iter()
            .find(|m| m["name"] == volume["name"])
            .unwrap_or_else(|| panic!("{path} is not mounted"));
        assert_eq!(mount["mountPath"].as_str(), Some(path));
        assert_eq!(mount["readOnly"].as_bool(), Some(true), "{path} read-only");
    }
    for m in mounts {
        assert_eq!(m["readOnly"].as_bool(), Some(true), "{m:?} read-only");
    }
}

#[test]
fn container_image_matches_the_manifest() {
    let containerfile = read("packaging/container/Containerfile");
    let instructions: Vec<&str> = containerfile
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(
        instructions
            .iter()
            .filter(|l| l.starts_with("FROM "))
            .count()
            >= 2,
        "a multi-stage build"
    );
    assert!(instructions.contains(&"ENTRYPOINT [\"/usr/bin/monitor\"]"));
    let args: Vec<String> = unit_args().iter().map(|a| format!("\"{a}\"")).collect();
    assert!(
        instructions.contains(&format!("CMD [{}]", args.join(", ")).as_str()),
        "CMD is the unit's arguments"
    );
    assert!(
        instructions
            .contains(&"COPY monitor/src/policy/default_policy.toml /etc/monitor/policy.toml")
    );
    assert!(
        instructions.contains(&"COPY --from=build /src/target/release/monitor /usr/bin/monitor")
    );
    // The build context leaves out build output.
    assert!(read(".dockerignore").lines().any(|l| l == "target/"));
}

#[test]
fn forwarding_examples_read_the_units_journal() {
    let fluent = &yaml("packaging/forwarding/fluent-bit.yaml")[0];
    let inputs = fluent["pipeline"]["inputs"].as_vec().expect("inputs");
    assert_eq!(inputs[0]["name"].as_str(), Some("systemd"));
    assert_eq!(
        inputs[0]["systemd_filter"].as_str(),
        Some("_SYSTEMD_UNIT=monitor.service")
    );
    let outputs: Vec<&str> = fluent["pipeline"]["outputs"]
        .as_vec()
        .expect("outputs")
        .iter()
        .map(|o| o["name"].as_str().expect("output name"))
        .collect();
    assert_eq!(outputs, ["es", "splunk", "kafka", "s3"]);
    let parser = &fluent["parsers"][0];
    assert_eq!(parser["format"].as_str(), Some("json"));
    assert!(
        fluent["pipeline"]["filters"]
            .as_vec()
            .expect("filters")
            .iter()
            .any(|f| f["parser"] == parser["name"]),
        "the parser is used"
    );

    let vector = &yaml("packaging/forwarding/vector.yaml")[0];
    let source = &vector["sources"]["monitor_journal"];
    assert_eq!(source["type"].as_str(), Some("journald"));
    assert_eq!(strings(&source["include_units"]), ["monitor.service"]);
    let sinks = vector["sinks"].as_hash().expect("sinks");
    let mut types: Vec<&str> = sinks
        .values()
        .map(|s| s["type"].as_str().expect("sink type"))
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        ["aws_s3", "elasticsearch", "kafka", "splunk_hec_logs"]
    );
    for sink in sinks.values() {
        assert_eq!(strings(&sink["inputs"]), ["monitor_records"]);
    }

    // The unit tags its journal entries `monitor`, which the rsyslog example selects.
    assert_eq!(unit_values("SyslogIdentifier"), ["monitor"]);
    assert!(
        read("packaging/forwarding/rsyslog/monitor.conf")
            .contains(r#"if $programname == "monitor" then"#)
    );
}

#[test]
fn every_file_the_package_ships_exists() {
    let manifest: toml::Value = read("monitor/Cargo.toml").parse().expect("Cargo.toml");
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().expect("assets");
    let mut targets = Vec::new();
    for asset in assets {
        let [source, target, mode] = asset.as_array().expect("asset").as_slice() else {
            panic!("asset is not [source, target, mode]: {asset}");
        };
        let source = source.as_str().expect("source");
        targets.push(target.as_str().expect("target"));
        assert!(mode.as_str().is_some_and(|m| m == "644" || m == "755"));
        if source.starts_with("target/") {
            continue;
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
        assert!(path.is_file(), "{} is missing", path.display());
    }
    assert!(targets.contains(&"usr/bin/"));
    assert!(targets.contains(&"etc/monitor/policy.toml"));
    let scripts = deb["maintainer-scripts"]
        .as_str()
        .expect("maintainer-scripts");
    let unit = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(scripts)
        .join("monitor.service");
    assert!(unit.is_file(), "{} is missing", unit.display());
    // The daemon reads the policy the unit names.
    assert_eq!(unit_args(), ["--policy", "/etc/monitor/policy.toml"]);
}
