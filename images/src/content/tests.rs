use std::time::Duration;

use oci_spec::image::MediaType;

use super::*;
use crate::testutil::FakeRegistry;

fn store() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(&dir.path().join("content")).unwrap();
    (dir, store)
}

fn desc(digest: &Digest, size: u64) -> Descriptor {
    let d: oci_spec::image::Digest = digest.to_string().parse().unwrap();
    Descriptor::new(MediaType::ImageLayerGzip, size, d)
}

fn ingest_entries(dir: &tempfile::TempDir) -> usize {
    fs::read_dir(dir.path().join("content/ingest")).unwrap().count()
}

#[tokio::test]
async fn ingest_verifies_and_commits() {
    let (dir, store) = store();
    let fake = FakeRegistry::new();
    let bytes = b"blob bytes".repeat(10_000);
    let digest = fake.put_blob(bytes.clone());
    let seen = std::sync::atomic::AtomicU64::new(0);
    let progress = |n: u64| seen.store(n, Ordering::SeqCst);
    let mut file = store
        .ingest(&desc(&digest, bytes.len() as u64), &fake, None, &progress)
        .await
        .unwrap();
    let mut read_back = Vec::new();
    file.read_to_end(&mut read_back).unwrap();
    assert_eq!(read_back, bytes);
    assert_eq!(seen.load(Ordering::SeqCst), bytes.len() as u64);
    assert!(store.contains(&digest));
    assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), bytes);
    assert_eq!(store.list().unwrap(), vec![digest.clone()]);
    assert_eq!(ingest_entries(&dir), 0);
    assert!(store.delete(&digest).unwrap());
    assert!(!store.delete(&digest).unwrap());
}

#[tokio::test]
async fn ingest_rejects_digest_mismatch_and_leaves_no_file() {
    let (dir, store) = store();
    let fake = FakeRegistry::new();
    let digest = fake.put_blob(b"the real bytes".to_vec());
    fake.corrupt(&digest, b"the fake bytes".to_vec());
    let err = store
        .ingest(&desc(&digest, 14), &fake, None, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImagesError::DigestMismatch { .. }), "{err:?}");
    assert!(!store.contains(&digest));
    assert_eq!(ingest_entries(&dir), 0);

    // Longer than announced: refused by our writer before the source's own check.
    fake.corrupt(&digest, b"the real bytes and more".to_vec());
    let err = store
        .ingest(&desc(&digest, 14), &fake, None, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImagesError::Io { .. }), "{err:?}");
    assert!(!store.contains(&digest));
    assert_eq!(ingest_entries(&dir), 0);
}

#[tokio::test]
async fn ingest_refuses_oversized_descriptors_before_fetching() {
    let (_dir, store) = store();
    let fake = FakeRegistry::new();
    let digest = fake.put_blob(vec![0; 100]);
    let err = store
        .ingest(&desc(&digest, 100), &fake, Some(99), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImagesError::TooLarge { .. }), "{err:?}");
    assert_eq!(fake.total_fetches(), 0);
}

#[tokio::test]
async fn cancelled_ingest_leaves_no_temp_file() {
    let (dir, store) = store();
    let fake = FakeRegistry::new();
    fake.set_delay(Duration::from_secs(5));
    let digest = fake.put_blob(vec![1; 10]);
    let d = desc(&digest, 10);
    let fut = store.ingest(&d, &fake, None, &|_| {});
    assert!(tokio::time::timeout(Duration::from_millis(50), fut).await.is_err());
    assert_eq!(ingest_entries(&dir), 0);
}

#[test]
fn write_read_and_corruption() {
    let (dir, store) = store();
    let digest = Digest::of(b"manifest");
    assert!(matches!(
        store.write(&digest, b"other"),
        Err(ImagesError::DigestMismatch { .. })
    ));
    assert_eq!(ingest_entries(&dir), 0);
    store.write(&digest, b"manifest").unwrap();
    assert_eq!(store.read(&digest, 100).unwrap().unwrap(), b"manifest");
    assert!(matches!(store.read(&digest, 3), Err(ImagesError::TooLarge { .. })));

    // A blob that no longer matches its name is dropped and reported absent.
    fs::write(store.blob_path(&digest), b"bitrot!!").unwrap();
    assert_eq!(store.read(&digest, 100).unwrap(), None);
    assert!(!store.contains(&digest));
}

#[test]
fn clean_ingest_removes_leftovers() {
    let (dir, store) = store();
    let ingest = dir.path().join("content/ingest");
    fs::write(ingest.join("abc.1.1.partial"), b"half").unwrap();
    fs::create_dir(ingest.join("odd-dir")).unwrap();
    assert_eq!(store.clean_ingest().unwrap(), 2);
    assert_eq!(ingest_entries(&dir), 0);
}
