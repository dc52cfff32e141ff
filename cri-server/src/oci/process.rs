//! The container's process: arguments, environment, working directory and
//! terminal (user, capabilities and the rest are filled in elsewhere).
//!
//! - **Arguments**, as the kubelet and containerd merge them: a CRI
//!   `command` replaces the image's Entrypoint *and* Cmd (`command + args`);
//!   with only `args`, they follow the image's Entrypoint; with neither, the
//!   image's Entrypoint + Cmd. An Entrypoint of `[""]` counts as none.
//!   Nothing at all is refused.
//! - **Environment**: `PATH` (a default), `HOSTNAME` (the pod's), the
//!   image's `Env`, then the CRI `envs`; a later entry replaces an earlier
//!   one with the same key in place, so the order is kept and keys are
//!   unique. Image entries without `=` are dropped.
//! - **Working directory**: the CRI `working_dir`, else the image's, else `/`.
//! - **Terminal**: the CRI `tty` (stdin and stdin_once are the monitor's
//!   business: they do not change the spec).

use k8s_cri::v1::ContainerConfig;
use oci_spec::image::Config as ImageConfig;

use super::defaults::DEFAULT_PATH_ENV;
use crate::error::CriError;

/// The process arguments (see the module doc).
pub fn args(config: &ContainerConfig, image: Option<&ImageConfig>) -> Result<Vec<String>, CriError> {
    let mut command = config.command.clone();
    let mut args = config.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args = image.and_then(|i| i.cmd().clone()).unwrap_or_default();
        }
        let entrypoint = image.and_then(|i| i.entrypoint().clone()).unwrap_or_default();
        if entrypoint != [""] {
            command = entrypoint;
        }
    }
    command.extend(args);
    if command.is_empty() {
        return Err(CriError::invalid(
            "command",
            "no command specified: the container config and the image give no command or args",
        ));
    }
    if command[0].is_empty() {
        return Err(CriError::invalid("command", "the executable (first argument) is empty"));
    }
    Ok(command)
}

/// Sets `KEY=VALUE` into `env`, replacing an entry with the same key.
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or_default();
    match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// The process environment (see the module doc).
pub fn env(config: &ContainerConfig, image: Option<&ImageConfig>, hostname: &str) -> Result<Vec<String>, CriError> {
    let mut env = vec![DEFAULT_PATH_ENV.to_string(), format!("HOSTNAME={hostname}")];
    for e in image.and_then(|i| i.env().as_ref()).into_iter().flatten() {
        if e.contains('=') && !e.starts_with('=') {
            set_env(&mut env, e.clone());
        }
    }
    for (i, kv) in config.envs.iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains('=') || kv.key.contains('\0') || kv.value.contains('\0') {
            return Err(CriError::invalid(
                "envs",
                format!("[{i}].key {:?} must be non-empty, without '=' or NUL", kv.key),
            ));
        }
        set_env(&mut env, format!("{}={}", kv.key, kv.value));
    }
    Ok(env)
}

/// The working directory (see the module doc).
pub fn cwd(config: &ContainerConfig, image: Option<&ImageConfig>) -> Result<String, CriError> {
    if !config.working_dir.is_empty() {
        if !config.working_dir.starts_with('/') {
            return Err(CriError::invalid(
                "working_dir",
                format!("{:?} must be an absolute path", config.working_dir),
            ));
        }
        return Ok(config.working_dir.clone());
    }
    match image.and_then(|i| i.working_dir().as_deref()).filter(|w| !w.is_empty()) {
        // Docker treats a relative image WorkingDir as relative to /.
        Some(w) if !w.starts_with('/') => Ok(format!("/{w}")),
        Some(w) => Ok(w.to_string()),
        None => Ok("/".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::KeyValue;
    use oci_spec::image::ConfigBuilder;

    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        let mut b = ConfigBuilder::default();
        if !entrypoint.is_empty() {
            b = b.entrypoint(entrypoint.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        if !cmd.is_empty() {
            b = b.cmd(cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        b.build().unwrap()
    }

    fn cfg(command: &[&str], args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn args_merge_like_the_kubelet() {
        let img = image(&["/entry", "-e"], &["cmd1", "cmd2"]);
        let a = |c: &[&str], x: &[&str]| args(&cfg(c, x), Some(&img)).unwrap();
        assert_eq!(
            a(&["sh", "-c"], &["echo hi"]),
            ["sh", "-c", "echo hi"],
            "command replaces entrypoint and cmd"
        );
        assert_eq!(a(&["sh"], &[]), ["sh"], "command alone drops the image cmd");
        assert_eq!(
            a(&[], &["x", "y"]),
            ["/entry", "-e", "x", "y"],
            "args follow the entrypoint"
        );
        assert_eq!(a(&[], &[]), ["/entry", "-e", "cmd1", "cmd2"]);
        let no_entry = image(&[], &["/bin/sh"]);
        assert_eq!(args(&cfg(&[], &[]), Some(&no_entry)).unwrap(), ["/bin/sh"]);
        assert_eq!(args(&cfg(&[], &["top"]), Some(&no_entry)).unwrap(), ["top"]);
        let empty_entry = image(&[""], &["/bin/sh"]);
        assert_eq!(args(&cfg(&[], &[]), Some(&empty_entry)).unwrap(), ["/bin/sh"]);
    }

    #[test]
    fn no_command_at_all_is_refused() {
        let err = args(&cfg(&[], &[]), Some(&image(&[], &[]))).unwrap_err();
        assert!(matches!(err, CriError::InvalidArgument { field: "command", .. }));
        assert!(err.to_string().contains("no command specified"));
        assert!(args(&cfg(&[], &[]), None).is_err());
        assert!(args(&cfg(&[""], &[]), None).is_err());
    }

    #[test]
    fn env_image_first_cri_overrides_in_place() {
        let img = ConfigBuilder::default()
            .env(vec![
                "PATH=/image/bin".to_string(),
                "A=image".to_string(),
                "NOEQUALS".to_string(),
                "B=image".to_string(),
            ])
            .build()
            .unwrap();
        let mut c = cfg(&["x"], &[]);
        c.envs = vec![
            KeyValue {
                key: "B".into(),
                value: "cri=with=equals".into(),
            },
            KeyValue {
                key: "C".into(),
                value: "".into(),
            },
            KeyValue {
                key: "A".into(),
                value: "cri".into(),
            },
        ];
        assert_eq!(
            env(&c, Some(&img), "pod-host").unwrap(),
            [
                "PATH=/image/bin",
                "HOSTNAME=pod-host",
                "A=cri",
                "B=cri=with=equals",
                "C="
            ]
        );
        assert_eq!(
            env(&cfg(&["x"], &[]), None, "h").unwrap(),
            [DEFAULT_PATH_ENV, "HOSTNAME=h"]
        );
        c.envs = vec![KeyValue {
            key: "X=Y".into(),
            value: "v".into(),
        }];
        assert!(env(&c, None, "h").unwrap_err().to_string().starts_with("envs: [0].key"));
    }

    #[test]
    fn working_dir_cri_then_image_then_root() {
        let img = ConfigBuilder::default()
            .working_dir("/srv".to_string())
            .build()
            .unwrap();
        let mut c = cfg(&["x"], &[]);
        assert_eq!(cwd(&c, Some(&img)).unwrap(), "/srv");
        assert_eq!(cwd(&c, None).unwrap(), "/");
        c.working_dir = "/work".into();
        assert_eq!(cwd(&c, Some(&img)).unwrap(), "/work");
        c.working_dir = "work".into();
        assert!(cwd(&c, None).unwrap_err().to_string().starts_with("working_dir"));
    }
}
