//! The CNI runner against fake plugins (shell scripts that log their
//! invocations). No root needed.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_cni::{CniRunner, CniRunnerConfig, PodNetwork, PodNetworkRequest, PortMapping, Protocol};
use serde_json::Value;

struct Env {
    _tmp: tempfile::TempDir,
    conf: PathBuf,
    bin: PathBuf,
    cache: PathBuf,
    log: PathBuf,
}

const IP_RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/netns"}],"ips":[{"address":"10.99.0.7/24","gateway":"10.99.0.1","interface":0}]}"#;

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let (conf, bin, cache) = (
            tmp.path().join("net.d"),
            tmp.path().join("bin"),
            tmp.path().join("cache"),
        );
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let log = tmp.path().join("log");
        let env = Env {
            conf,
            bin,
            cache,
            log,
            _tmp: tmp,
        };
        env.plugin("fakeip", &format!("echo '{IP_RESULT}'"), "");
        env.plugin(
            "fakepass",
            &format!("echo '{}'", IP_RESULT.replace("10.99.0.7", "10.99.0.8")),
            "",
        );
        env.plugin(
            "fakefail",
            r#"echo 'fail stderr' >&2; echo '{"cniVersion":"1.0.0","code":7,"msg":"refused","details":"by test"}'; exit 1"#,
            "",
        );
        env.plugin(
            "fakegone",
            &format!("echo '{IP_RESULT}'"),
            r#"echo '{"cniVersion":"1.0.0","code":3,"msg":"no such container"}'; exit 1"#,
        );
        env
    }

    /// A plugin that logs `name CMD netns=… stdin` and runs `add` on ADD, `del` on DEL.
    fn plugin(&self, name: &str, add: &str, del: &str) {
        let path = self.bin.join(name);
        let script = format!(
            r#"#!/bin/sh
input=$(cat)
printf '%s %s netns=%s %s\n' "{name}" "$CNI_COMMAND" "$CNI_NETNS" "$input" >> "{log}"
case "$CNI_COMMAND" in
ADD) {add} ;;
DEL) {del} ;;
VERSION) echo '{{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}}' ;;
esac
exit 0
"#,
            log = self.log.display(),
            add = if add.is_empty() { "true" } else { add },
            del = if del.is_empty() { "true" } else { del },
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn conflist(&self, file: &str, version: &str, plugins: &[&str]) {
        let plugins: Vec<Value> = plugins
            .iter()
            .map(|p| {
                if *p == "fakepass" {
                    serde_json::json!({"type": p, "capabilities": {"portMappings": true}})
                } else {
                    serde_json::json!({"type": p})
                }
            })
            .collect();
        let list = serde_json::json!({"cniVersion": version, "name": "testnet", "plugins": plugins});
        std::fs::write(self.conf.join(file), list.to_string()).unwrap();
    }

    fn runner(&self) -> CniRunner {
        CniRunner::new(CniRunnerConfig {
            conf_dir: self.conf.clone(),
            bin_dirs: vec![self.bin.clone()],
            cache_dir: self.cache.clone(),
            plugin_timeout: Duration::from_secs(10),
        })
    }

    /// `(plugin, command, netns, stdin)` per invocation, VERSION probes excluded.
    fn calls(&self) -> Vec<(String, String, String, Value)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut parts = l.splitn(4, ' ');
                let (p, c, n, s) = (
                    parts.next()?,
                    parts.next()?,
                    parts.next()?,
                    parts.next().unwrap_or("null"),
                );
                (c != "VERSION").then(|| {
                    (
                        p.into(),
                        c.into(),
                        n.trim_start_matches("netns=").into(),
                        serde_json::from_str(s).unwrap_or(Value::Null),
                    )
                })
            })
            .collect()
    }

    fn clear_log(&self) {
        let _ = std::fs::remove_file(&self.log);
    }

    fn cache_files(&self) -> Vec<String> {
        match std::fs::read_dir(self.cache.join("results")) {
            Ok(d) => d
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn request(id: &str, netns: &Path) -> PodNetworkRequest {
    let mut req = PodNetworkRequest::new(id, netns);
    req.pod_name = "web".into();
    req.pod_namespace = "default".into();
    req.pod_uid = "uid-1".into();
    req.port_mappings.push(PortMapping {
        host_port: 8080,
        container_port: 80,
        protocol: Protocol::Tcp,
        host_ip: None,
    });
    req
}

fn names(calls: &[(String, String, String, Value)]) -> Vec<String> {
    calls.iter().map(|(p, c, _, _)| format!("{p} {c}")).collect()
}

#[tokio::test]
async fn add_chains_prev_result_and_filters_capabilities_then_del_after_restart_uses_cache() {
    let env = Env::new();
    env.conflist("10-test.conflist", "1.0.0", &["fakeip", "fakepass"]);
    let netns = env.conf.clone(); // any existing path stands in for the netns
    let req = request("pod1", &netns);
    let runner = env.runner();
    let res = runner.setup(&req).await.unwrap();
    assert_eq!(res.network, "testnet");
    assert_eq!(
        res.pod_ips(),
        vec!["10.99.0.8".parse::<std::net::IpAddr>().unwrap()],
        "last plugin's result wins"
    );

    let calls = env.calls();
    assert_eq!(names(&calls), ["fakeip ADD", "fakepass ADD"]);
    assert!(calls[0].3.get("prevResult").is_none());
    assert!(
        calls[0].3.get("runtimeConfig").is_none(),
        "fakeip declared no capabilities"
    );
    assert_eq!(calls[0].3["name"], "testnet");
    assert_eq!(calls[1].3["prevResult"]["ips"][0]["address"], "10.99.0.7/24");
    assert_eq!(calls[1].3["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    assert_eq!(calls[1].2, netns.display().to_string());
    assert_eq!(env.cache_files(), ["testnet-pod1-eth0"]);

    // "Restart": a new runner, and the config is gone from the conf dir.
    std::fs::remove_file(env.conf.join("10-test.conflist")).unwrap();
    env.clear_log();
    let restarted = env.runner();
    let mut del_req = PodNetworkRequest::new("pod1", "/nonexistent/netns");
    del_req.pod_name.clear();
    restarted.teardown(&del_req).await.unwrap();
    let calls = env.calls();
    assert_eq!(
        names(&calls),
        ["fakepass DEL", "fakeip DEL"],
        "DEL runs in reverse from the cached config"
    );
    assert_eq!(calls[0].2, "", "a gone netns is passed empty");
    assert_eq!(calls[0].3["prevResult"]["ips"][0]["address"], "10.99.0.8/24");
    assert_eq!(
        calls[0].3["runtimeConfig"]["portMappings"][0]["hostPort"], 8080,
        "cached capability args"
    );
    assert!(env.cache_files().is_empty());

    env.clear_log();
    restarted.teardown(&del_req).await.unwrap();
    assert!(
        env.calls().is_empty(),
        "second DEL with no cache and no config is a no-op"
    );
}

#[tokio::test]
async fn failed_add_is_rolled_back_and_reports_the_plugin_error() {
    let env = Env::new();
    env.conflist("10-test.conflist", "1.0.0", &["fakeip", "fakefail"]);
    let req = request("pod2", &env.conf);
    let err = env.runner().setup(&req).await.unwrap_err();
    assert_eq!(err.plugin_code(), Some(7));
    let text = err.to_string();
    assert!(
        text.contains("testnet") && text.contains("fakefail") && text.contains("refused"),
        "{text}"
    );
    assert!(text.contains("fail stderr"), "stderr is in the error: {text}");
    assert_eq!(
        names(&env.calls()),
        ["fakeip ADD", "fakefail ADD", "fakefail DEL", "fakeip DEL"]
    );
    assert!(env.cache_files().is_empty());
}

#[tokio::test]
async fn missing_plugin_is_a_clear_error_and_not_ready() {
    let env = Env::new();
    env.conflist("10-test.conflist", "1.0.0", &["fakeip", "nosuchplugin"]);
    let runner = env.runner();
    let err = runner.setup(&request("pod3", &env.conf)).await.unwrap_err().to_string();
    assert!(
        err.contains("\"nosuchplugin\" not found in") && err.contains(&env.bin.display().to_string()),
        "{err}"
    );
    assert!(env.calls().is_empty(), "nothing runs when a binary is missing");
    let status = runner.status().await;
    assert!(!status.ready);
    assert!(status.reason.unwrap().contains("nosuchplugin"));
}

#[tokio::test]
async fn status_reports_missing_config_and_picks_up_new_config() {
    let env = Env::new();
    let runner = env.runner();
    let status = runner.status().await;
    assert!(!status.ready);
    assert_eq!(
        status.reason.unwrap(),
        format!("no network config found in {}", env.conf.display())
    );
    env.conflist("10-test.conflist", "1.0.0", &["fakeip"]);
    let status = runner.status().await;
    assert!(status.ready, "{status:?}");
    assert_eq!(status.network.as_deref(), Some("testnet"));
}

#[tokio::test]
async fn del_tolerates_missing_plugins_and_container_unknown() {
    let env = Env::new();
    env.conflist("10-test.conflist", "1.0.0", &["fakeip", "fakegone", "fakepass"]);
    let runner = env.runner();
    let req = request("pod4", &env.conf);
    runner.setup(&req).await.unwrap();
    std::fs::remove_file(env.bin.join("fakepass")).unwrap();
    env.clear_log();
    runner.teardown(&req).await.unwrap();
    assert_eq!(names(&env.calls()), ["fakegone DEL", "fakeip DEL"]);
    assert!(env.cache_files().is_empty());
}

#[tokio::test]
async fn check_runs_for_new_versions_and_is_skipped_for_old_ones() {
    let env = Env::new();
    env.conflist("10-test.conflist", "1.0.0", &["fakeip", "fakepass"]);
    let runner = env.runner();
    let req = request("pod5", &env.conf);
    let err = runner.check(&req).await.unwrap_err().to_string();
    assert!(err.contains("no cached ADD result"), "{err}");
    runner.setup(&req).await.unwrap();
    env.clear_log();
    runner.check(&req).await.unwrap();
    let calls = env.calls();
    assert_eq!(names(&calls), ["fakeip CHECK", "fakepass CHECK"]);
    assert_eq!(
        calls[0].3["prevResult"]["ips"][0]["address"], "10.99.0.8/24",
        "CHECK gets the cached final result"
    );
    runner.teardown(&req).await.unwrap();

    env.conflist("10-test.conflist", "0.3.1", &["fakeip"]);
    runner.setup(&req).await.unwrap();
    env.clear_log();
    runner.check(&req).await.unwrap();
    assert!(env.calls().is_empty(), "no CHECK before 0.4.0");
    runner.teardown(&req).await.unwrap();
}

#[tokio::test]
async fn cleanup_orphans_deletes_only_dead_pods() {
    let env = Env::new();
    env.conflist("10-test.conflist", "1.0.0", &["fakeip"]);
    let runner = env.runner();
    for id in ["live1", "dead1", "dead2"] {
        runner.setup(&request(id, &env.conf)).await.unwrap();
    }
    env.clear_log();
    let live: HashSet<String> = ["live1".to_string()].into();
    let report = env.runner().cleanup_orphans(&live).await.unwrap();
    let mut pods = report.pods.clone();
    pods.sort();
    assert_eq!(pods, ["dead1", "dead2"]);
    assert!(report.failures.is_empty());
    assert_eq!(names(&env.calls()), ["fakeip DEL", "fakeip DEL"]);
    assert_eq!(env.cache_files(), ["testnet-live1-eth0"]);
}

#[tokio::test]
async fn invalid_requests_are_refused_before_any_plugin_runs() {
    let env = Env::new();
    env.conflist("10-test.conflist", "1.0.0", &["fakeip"]);
    let runner = env.runner();
    for id in ["", "../x", "a b"] {
        assert!(runner.setup(&request(id, &env.conf)).await.is_err(), "{id:?}");
    }
    let mut req = request("ok", &env.conf);
    req.pod_name = "a;b".into();
    assert!(runner.setup(&req).await.is_err());
    assert!(env.calls().is_empty());
}
