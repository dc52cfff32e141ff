//! `CNI_ARGS`: `IgnoreUnknown=1;K8S_POD_NAMESPACE=…;K8S_POD_NAME=…;…`.

use crate::types::PodNetworkRequest;

/// A key or value that would corrupt the `;`/`=`-separated list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CNI_ARGS entry {key:?}={value:?}: must not contain ';' or '=' or be an empty key")]
pub struct InvalidArg {
    pub key: String,
    pub value: String,
}

/// The ordered key/value pairs of a pod's `CNI_ARGS`.
pub fn pod_args(req: &PodNetworkRequest) -> Result<Vec<(String, String)>, InvalidArg> {
    let mut args = vec![
        ("IgnoreUnknown".to_string(), "1".to_string()),
        ("K8S_POD_NAMESPACE".to_string(), req.pod_namespace.clone()),
        ("K8S_POD_NAME".to_string(), req.pod_name.clone()),
        ("K8S_POD_INFRA_CONTAINER_ID".to_string(), req.pod_id.clone()),
        ("K8S_POD_UID".to_string(), req.pod_uid.clone()),
    ];
    args.extend(req.extra_args.iter().cloned());
    for (key, value) in &args {
        let bad = |s: &str| s.contains(';') || s.contains('=');
        if key.is_empty() || bad(key) || bad(value) {
            return Err(InvalidArg {
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
    Ok(args)
}

/// Joins pairs into the `CNI_ARGS` string.
pub fn format_args(args: &[(String, String)]) -> String {
    args.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_args_in_order() {
        let mut req = PodNetworkRequest::new("abc123", "/run/netns/x");
        req.pod_name = "web".into();
        req.pod_namespace = "default".into();
        req.pod_uid = "u-1".into();
        req.extra_args.push(("FOO".into(), "bar".into()));
        let args = pod_args(&req).unwrap();
        assert_eq!(
            format_args(&args),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc123;\
             K8S_POD_UID=u-1;FOO=bar"
        );
    }

    #[test]
    fn rejects_separators() {
        let mut req = PodNetworkRequest::new("abc", "/x");
        req.pod_name = "a;b".into();
        assert_eq!(pod_args(&req).unwrap_err().key, "K8S_POD_NAME");
        let mut req = PodNetworkRequest::new("abc", "/x");
        req.extra_args.push(("K=".into(), "v".into()));
        assert!(pod_args(&req).is_err());
    }
}
