use k8s_cri::v1::{ContainerConfig, ContainerMetadata, PodSandboxConfig, PodSandboxMetadata};

use super::*;

fn pod(id: &str, name: &str, attempt: u32) -> PodRecord {
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            namespace: "ns".into(),
            uid: "u1".into(),
            attempt,
        }),
        ..Default::default()
    };
    PodRecord {
        id: id.into(),
        name_key: PodRecord::name_key_of(&config),
        config,
        runtime_handler: String::new(),
        state: PodState::Ready,
        created_at: 1,
        dir: PathBuf::from("/run/berth/pods").join(id),
        netns: None,
        ipcns: None,
        utsns: None,
        pidns: None,
        ips: vec!["10.88.0.2".into()],
        network: Some("builtin".into()),
        cgroup_parent: format!("/berth/pods/{id}"),
    }
}

fn container(id: &str, pod: &PodRecord, name: &str) -> ContainerRecord {
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        ..Default::default()
    };
    ContainerRecord {
        id: id.into(),
        pod_id: pod.id.clone(),
        name_key: ContainerRecord::name_key_of(&config, &pod.config),
        config,
        image_id: "sha256:abc".into(),
        image_ref: "busybox".into(),
        state: ContainerState::Created,
        created_at: 2,
        started_at: 0,
        finished_at: 0,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        log_path: None,
        stop_signal: None,
        resources: None,
        lower_dirs: Vec::new(),
        user: None,
    }
}

#[test]
fn records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cri.redb");
    let p = pod("p1", "web", 0);
    let c = container("c1", &p, "nginx");
    {
        let store = CriStore::open(&path).unwrap();
        store.insert_pod(&p).unwrap();
        store.insert_container(&c).unwrap();
        let mut running = c.clone();
        running.state = ContainerState::Running;
        store.update_container(&running).unwrap();
    }
    let store = CriStore::open(&path).unwrap();
    assert_eq!(store.pod("p1").unwrap(), p);
    assert_eq!(store.container("c1").unwrap().state, ContainerState::Running);
    assert_eq!(store.containers_of("p1").len(), 1);
    assert_eq!(
        store.name_holder(&pod_name_key(&p.name_key)).unwrap().as_deref(),
        Some("p1")
    );
}

#[test]
fn a_derivable_update_is_read_at_once_and_persisted_by_the_next_durable_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cri.redb");
    let p = pod("p1", "web", 0);
    let c = container("c1", &p, "nginx");
    let d = container("c2", &p, "sidecar");
    {
        let store = CriStore::open(&path).unwrap();
        store.insert_pod(&p).unwrap();
        store.insert_container(&c).unwrap();
        let mut running = c.clone();
        running.state = ContainerState::Running;
        store.update_container_derivable(&running).unwrap();
        assert_eq!(store.container("c1").unwrap().state, ContainerState::Running);
        store.insert_container(&d).unwrap();
    }
    let store = CriStore::open(&path).unwrap();
    assert_eq!(store.container("c1").unwrap().state, ContainerState::Running);
    assert!(store.container("c2").is_some());
}

#[test]
fn a_held_name_is_refused_naming_the_holder_and_freed_on_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = CriStore::open(&dir.path().join("cri.redb")).unwrap();
    let first = pod("p1", "web", 0);
    store.insert_pod(&first).unwrap();
    let err = store.insert_pod(&pod("p2", "web", 0)).unwrap_err();
    assert!(
        matches!(&err, StoreError::NameInUse { holder, .. } if holder == "p1"),
        "{err}"
    );
    assert!(store.pod("p2").is_none(), "the refused record must not be stored");
    // Another attempt is another name.
    store.insert_pod(&pod("p3", "web", 1)).unwrap();

    let c = container("c1", &first, "app");
    store.insert_container(&c).unwrap();
    let err = store.insert_container(&container("c2", &first, "app")).unwrap_err();
    assert!(err.to_string().contains("c1"), "{err}");

    store.delete_container("c1").unwrap();
    store.delete_container("c1").unwrap();
    store.insert_container(&container("c2", &first, "app")).unwrap();
    store.delete_pod("p1").unwrap();
    store.delete_pod("p1").unwrap();
    store.insert_pod(&pod("p4", "web", 0)).unwrap();
}

#[test]
fn a_second_daemon_cannot_open_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cri.redb");
    let _first = CriStore::open(&path).unwrap();
    assert!(CriStore::open(&path).is_err());
}

#[test]
fn a_container_record_without_a_user_still_loads_and_a_user_roundtrips() {
    let p = pod("p1", "web", 0);
    let mut c = container("c1", &p, "app");
    let mut old = serde_json::to_value(&c).unwrap();
    old.as_object_mut().unwrap().remove("user");
    let loaded: ContainerRecord = decode("c1", old.to_string().as_bytes()).unwrap();
    assert_eq!(loaded.user, None);
    assert_eq!(loaded, c);
    c.user = Some(ProcessUser {
        uid: 1000,
        gid: 100,
        supplemental_groups: vec![10, 100],
    });
    let again: ContainerRecord = decode("c1", &encode("c1", &c).unwrap()).unwrap();
    assert_eq!(again, c);
}
